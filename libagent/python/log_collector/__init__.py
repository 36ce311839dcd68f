"""log_collector: the seed client's API (AsyncLogClient) over agentd.

Code written for the seed's in-process client runs unchanged:

    from log_collector import AsyncLogClient
    logger = AsyncLogClient("http://localhost:8000", service="payment-api")
    logger.info("paid", user_id="u-42")

Records go to the local agentd (agentlog.Client); batching, compression,
retries and the server URL are agentd's job now.
"""

from .async_client import AsyncLogClient

__version__ = "1.0.0"
__all__ = ["AsyncLogClient"]
