"""
What talking to an OpenAI-compatible server takes, shared by llm.py (the concurrent chat backend)
and llm_batch.py (the Batch API backend): the client, list prices and cost estimates, the key
masked in every message, and the sorting of faults into retry / stop / bad request.
"""
import asyncio
import json
import os
import random

from tinystories.secret import hide_secret

PRICES = {  # USD per 1M (input, output) tokens, list prices; the Batch API charges half
    'gpt-4.1': (2.00, 8.00), 'gpt-4.1-mini': (0.40, 1.60), 'gpt-4.1-nano': (0.10, 0.40),
    'gpt-4o': (2.50, 10.00), 'gpt-4o-mini': (0.15, 0.60), 'gpt-3.5-turbo': (0.50, 1.50),
    'gpt-4': (30.00, 60.00), 'gpt-5': (1.25, 10.00), 'gpt-5-mini': (0.25, 2.00),
    'gpt-5-nano': (0.05, 0.40),
}
TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


def price_of(model, price=None):
    if price is not None:
        return tuple(price)
    return PRICES.get(model, PRICES.get(model.split('/')[-1].rsplit('-20', 1)[0], (0.0, 0.0)))


def cost_of(prompt_tokens, completion_tokens, price, batch):
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6 * (0.5 if batch else 1.0)


def estimate_cost(requests, model, batch=False, price=None, out_tokens_guess=None):
    """(input tokens, output tokens, USD) for sending `requests` once: input at ~4 characters a
    token, output at out_tokens_guess per answer (default: the request's max_tokens, an upper
    bound)."""
    tin = tout = 0
    for r in requests:
        tin += sum(len(m['content']) for m in r['messages']) // 4 + 8
        p = r.get('params', {})
        tout += out_tokens_guess or p.get('max_tokens') or p.get('max_completion_tokens') or 500
    return tin, tout, cost_of(tin, tout, price_of(model, price), batch)


# ----------------------------------------------------------------------------- the client
def mask(text, settings):
    """`text` with the API key hidden (secret.hide_secret: the whole key becomes its first 3
    characters and ***, any run of 6 or more of its characters ***)."""
    return hide_secret(text, os.environ.get(settings.get('api_key_env') or 'OPENAI_API_KEY', ''), keep=3)


def make_client(settings, asynchronous):
    """An OpenAI SDK client with its own retries off (ours honour Retry-After and a budget)."""
    import openai
    key = os.environ.get(settings['api_key_env'], '')
    local = bool(settings['base_url']) and 'api.openai.com' not in settings['base_url']
    if not key and not local:
        raise SystemExit(f"error: set the API key in the environment variable {settings['api_key_env']} "
                         "(or point --base_url at a local server)")
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(api_key=key or 'no-key', base_url=settings['base_url'] or None,
               max_retries=0, timeout=settings['timeout'])


# ----------------------------------------------------------------------------- faults
def retry_delay(attempt, retry_after=None):
    """Exponential backoff with full jitter, at least what the server asked for."""
    delay = random.uniform(0.5, 1.0) * min(30.0, 0.25 * 2 ** attempt)
    return max(delay, retry_after or 0.0)


def retry_after_of(exc):
    headers = getattr(getattr(exc, 'response', None), 'headers', None) or {}
    try:
        if headers.get('retry-after-ms'):
            return float(headers['retry-after-ms']) / 1000
        if headers.get('retry-after'):
            return float(headers['retry-after'])
    except ValueError:
        return None
    return None


def classify(exc):
    """'transient' (try again), 'fatal' (stop the run: bad key, bad model), or 'bad request'."""
    import openai
    status = getattr(exc, 'status_code', None)
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, asyncio.TimeoutError,
                        json.JSONDecodeError, openai.APIResponseValidationError)):
        return 'transient'
    if status in TRANSIENT_STATUS or (status or 0) >= 500:
        return 'transient'
    if status in (401, 403, 404):
        return 'fatal'
    if isinstance(exc, openai.APIStatusError):
        return 'bad request'
    return 'transient' if isinstance(exc, (OSError, ValueError)) else 'fatal'


def error_name(exc):
    status = getattr(exc, 'status_code', None)
    return f'http {status}' if status else type(exc).__name__


REASON_CHARS = 200   # how much of a server's error body a report keeps


def server_reason(exc, settings):
    """The server's own words on a failed request, on one line, at most REASON_CHARS characters,
    the key masked: the message of a JSON error body ({"error": {"message"}} as OpenAI and vLLM
    answer, {"detail"} as FastAPI servers do), else the body's text; for a request that got no
    answer (a timeout, a refused connection), the client's message."""
    response = getattr(exc, 'response', None)
    text = ''
    if response is not None:
        try:
            text = response.text
            body = json.loads(text)
        except Exception:  # noqa: BLE001 (a body that is not JSON, or not readable: keep the text)
            body = None
        if isinstance(body, dict):
            error = body.get('error')
            found = error.get('message') if isinstance(error, dict) else error or body.get('detail') or body.get('message')
            if found:
                text = found if isinstance(found, str) else json.dumps(found)
    return reason_line(text or getattr(exc, 'message', None) or str(exc), settings)


def reason_line(text, settings):
    """A server's message as reports keep it: the key masked, on one line, cut to REASON_CHARS."""
    text = ' '.join(mask(text, settings).split())
    return text[:REASON_CHARS] + ('...' if len(text) > REASON_CHARS else '')


def error_text(exc, settings):
    """'http 401: Incorrect API key provided: sk-***', the key masked."""
    return f'{error_name(exc)}: {server_reason(exc, settings)}'
