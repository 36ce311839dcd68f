"""AsyncLogClient: the seed client's public surface on top of agentlog.Client.

Differences from the seed client, all in the caller's favour: nothing is
queued in the process (each call hands one datagram to agentd, or counts a
drop), extra fields are kept (agentd puts them in `metadata`), and level names
and aliases are normalised (`warning` -> WARN). The transport arguments
(server_url, batch_size, flush_interval, max_queue_size, enable_compression,
max_retries) are ignored, with one warning per process.
"""

import contextvars
import os
import sys
import time
import warnings

import agentlog

# The seed's two context variables: the HTTP request context (set/clear,
# replaced as a whole) and the user context (nestable, merged).
_request_context = contextvars.ContextVar("log_collector_request_context", default=None)
_user_context = contextvars.ContextVar("log_collector_user_context", default=None)

_UNSET = object()
_warned = False


def _warn_transport(names):
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn("log_collector: %s ignored: records go to the local agentd, which batches, "
                  "compresses and retries them" % ", ".join(names), RuntimeWarning, stacklevel=3)


class _Awaitable:
    """The result of close(): the work is already done; awaiting it (as code
    written for the seed's `async def close()` does) returns None at once."""
    __slots__ = ()

    def __await__(self):
        return iter(())

    def __repr__(self):
        return "<closed>"


class AsyncLogClient(agentlog.Client):
    """Drop-in replacement for the seed's log_collector.AsyncLogClient.

    Every argument of the seed's constructor is accepted. service,
    environment, service_version, log_type and enable_global_error_handler
    mean what they meant (with the same environment variables); socket_path
    (keyword only, not in the seed) selects agentd's socket.
    """

    _context_vars = (_request_context, _user_context, agentlog._context)

    def __init__(self, server_url=None, service=None, environment=None, service_version=None,
                 log_type=None, batch_size=_UNSET, flush_interval=_UNSET, max_queue_size=_UNSET,
                 enable_compression=_UNSET, max_retries=_UNSET, enable_global_error_handler=False,
                 socket_path=None):
        ignored = [name for name, value in (
            ("server_url", server_url), ("batch_size", batch_size), ("flush_interval", flush_interval),
            ("max_queue_size", max_queue_size), ("enable_compression", enable_compression),
            ("max_retries", max_retries)) if value is not None and value is not _UNSET]
        if ignored:
            _warn_transport(ignored)
        self.server_url = (server_url or os.environ.get("LOG_SERVER_URL") or "").rstrip("/") or None
        super().__init__(socket_path=socket_path, service=service, environment=environment,
                         service_version=service_version, log_type=log_type,
                         enable_global_error_handler=enable_global_error_handler)
        self.enable_global_error_handler_on = self._hooks is not None

    # -- logging --------------------------------------------------------------

    def log(self, level, message, auto_caller=True, **kwargs):
        """Send one record; function_name and file_path are the caller's unless
        auto_caller is False or the fields give them."""
        return self._log(level, message, kwargs, sys._getframe(1) if auto_caller else None)

    def trace(self, message, auto_caller=True, **kwargs):
        return self._log(0, message, kwargs, sys._getframe(1) if auto_caller else None)

    def debug(self, message, auto_caller=True, **kwargs):
        return self._log(1, message, kwargs, sys._getframe(1) if auto_caller else None)

    def info(self, message, auto_caller=True, **kwargs):
        return self._log(2, message, kwargs, sys._getframe(1) if auto_caller else None)

    def warn(self, message, auto_caller=True, **kwargs):
        return self._log(3, message, kwargs, sys._getframe(1) if auto_caller else None)

    warning = warn

    def error(self, message, auto_caller=True, **kwargs):
        return self._log(4, message, kwargs, sys._getframe(1) if auto_caller else None)

    def fatal(self, message, auto_caller=True, **kwargs):
        return self._log(5, message, kwargs, sys._getframe(1) if auto_caller else None)

    critical = fatal

    # -- helpers ----------------------------------------------------------------

    def start_timer(self):
        """Start time (time.time()) for end_timer()."""
        return time.time()

    def end_timer(self, start_time, level, message, **kwargs):
        """Log message with duration_ms measured since start_timer()."""
        kwargs["duration_ms"] = (time.time() - start_time) * 1000.0
        return self._log(level, message, kwargs, sys._getframe(1))

    def error_with_trace(self, message, exception=None, auto_caller=True, **kwargs):
        return self._error_with_trace(message, exception, kwargs,
                                      sys._getframe(1) if auto_caller else None)

    def flush(self):
        """Nothing is queued here; kept for the seed API."""
        return None

    def close(self):
        """Close the socket and restore the global error hook. Returns an
        awaitable, so both `client.close()` and `await client.close()` work."""
        super().close()
        return _Awaitable()

    # -- context (class level, as in the seed) -------------------------------------

    @staticmethod
    def set_request_context(**context):
        """Fields added to every record of this context (web middleware)."""
        _request_context.set(context)

    @staticmethod
    def clear_request_context():
        _request_context.set(None)

    @staticmethod
    def get_request_context():
        return _request_context.get()

    @staticmethod
    def set_user_context(**context):
        _user_context.set(context)

    @staticmethod
    def clear_user_context():
        _user_context.set(None)

    @staticmethod
    def get_user_context():
        return _user_context.get()

    @staticmethod
    def user_context(**context):
        """Context manager: merge fields (user_id, trace_id, ...) into the user
        context for the block; nestable, inner values win."""
        return agentlog._ContextScope(_user_context, context)
