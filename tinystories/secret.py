"""
Hiding a secret (an API key, a hub token) in any text before it is printed or written: a server
may echo the key whole in an error, or only part of it ("... ending in SECRET123").
"""
RUN = 6   # this many of the secret's characters in a row are hidden wherever they appear


def hide_secret(text, secret, keep=0):
    """`text` with the whole secret replaced by its first `keep` characters and ***, and every run
    of RUN or more of its characters in a row replaced by ***."""
    text = str(text)
    if len(secret) >= 4:
        text = text.replace(secret, secret[:keep] + '***')
    if len(secret) < RUN:
        return text
    pieces = {secret[i:i + RUN] for i in range(len(secret) - RUN + 1)}
    hidden = [False] * len(text)
    for i in range(len(text) - RUN + 1):
        if text[i:i + RUN] in pieces:
            hidden[i:i + RUN] = [True] * RUN
    out = []
    for i, ch in enumerate(text):
        if not hidden[i]:
            out.append(ch)
        elif i == 0 or not hidden[i - 1]:
            out.append('***')  # one *** for each hidden run
    return ''.join(out)
