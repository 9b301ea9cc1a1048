"""The channel to the gateway and every call through it: the bearer token in the metadata,
refreshed with the stored refresh token when it has expired or the server answers
UNAUTHENTICATED (once per call), and gRPC errors turned into CliErrors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_cli.endpoint import Endpoint
from marquee_cli.errors import CliError, first_line, not_logged_in, rpc_failure
from marquee_cli.exit_codes import ExitCode
from marquee_cli.token_store import StoredSession, TokenStore

Stub = TypeVar("Stub")
Metadata = tuple[tuple[str, str], ...]

# Unary calls that take longer than this have gone wrong somewhere; streams have no deadline.
CALL_TIMEOUT_SECONDS = 60.0
# How often a long blocking call wakes up so that Ctrl-C is noticed.
_POLL_SECONDS = 0.2


class Connection:
    def __init__(self, endpoint: Endpoint, store: TokenStore) -> None:
        self.endpoint = endpoint
        self.store = store
        self._channel: grpc.Channel | None = None
        self._stubs: dict[type, Any] = {}

    @property
    def url(self) -> str:
        return self.endpoint.url

    def stub(self, cls: Callable[[grpc.Channel], Stub]) -> Stub:
        if self._channel is None:
            # Uploads send 256 KiB messages, and results come back in chunks of a similar size.
            options = [("grpc.max_receive_message_length", 16 << 20)]
            self._channel = (
                grpc.secure_channel(self.endpoint.target, grpc.ssl_channel_credentials(), options)
                if self.endpoint.tls
                else grpc.insecure_channel(self.endpoint.target, options)
            )
        key = cls if isinstance(cls, type) else type(cls)
        if key not in self._stubs:
            self._stubs[key] = cls(self._channel)
        return self._stubs[key]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # Sessions.

    def session(self) -> StoredSession:
        stored = self.store.get(self.url)
        if stored is None:
            raise not_logged_in(self.url)
        return stored

    def save_tokens(self, username: str, tokens: auth_pb2.TokenResponse) -> StoredSession:
        session = StoredSession.from_tokens(
            username,
            tokens.access_token,
            tokens.expires_in,
            tokens.refresh_token,
            tokens.refresh_expires_in,
        )
        with self.store.locked():
            self.store.put(self.url, session)
        return session

    def refresh(self, stale_access_token: str) -> StoredSession:
        """A fresh access token for the stored session. Under the store's lock: when another
        `marquee` process refreshed meanwhile, its tokens are used as they are, since presenting
        the used refresh token again would end the session."""
        with self.store.locked():
            current = self.store.get(self.url)
            if current is None:
                raise not_logged_in(self.url)
            if current.access_token != stale_access_token and current.access_fresh():
                return current
            if current.refresh_expires_at <= time.time():
                self.store.remove(self.url)
                raise CliError(
                    f"your session at {self.url} has expired: log in again with `marquee login`",
                    ExitCode.UNAUTHENTICATED,
                )
            auth = self.stub(auth_pb2_grpc.AuthServiceStub)
            try:
                tokens = auth.Refresh(
                    auth_pb2.RefreshRequest(refresh_token=current.refresh_token),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    self.store.remove(self.url)
                    why = first_line(err.details() or "")  # type: ignore[attr-defined]
                    raise CliError(
                        f"your session at {self.url} has ended ({why}): log in "
                        "again with `marquee login`",
                        ExitCode.UNAUTHENTICATED
                        if code == grpc.StatusCode.UNAUTHENTICATED
                        else ExitCode.FORBIDDEN,
                    ) from None
                raise rpc_failure(err, self.url) from None
            # Rotation: the old refresh token is used up, so the new one is saved at once.
            renewed = StoredSession.from_tokens(
                current.username,
                tokens.access_token,
                tokens.expires_in,
                tokens.refresh_token,
                tokens.refresh_expires_in,
            )
            self.store.put(self.url, renewed)
            return renewed

    def _auth_metadata(self) -> Metadata:
        session = self.session()
        if not session.access_fresh():
            session = self.refresh(session.access_token)
        return (("authorization", f"Bearer {session.access_token}"),)

    @staticmethod
    def _token_of(metadata: Metadata) -> str:
        return dict(metadata).get("authorization", "").removeprefix("Bearer ")

    # Calls.

    def call(
        self,
        method: Any,
        request: Any,
        *,
        auth: bool = True,
        timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> Any:
        """A unary call; with `auth`, as the logged-in user."""
        metadata = self._auth_metadata() if auth else ()
        for retried in (False, True):
            try:
                return self._wait(method.future(request, metadata=metadata, timeout=timeout))
            except grpc.RpcError as err:
                if auth and not retried and err.code() == grpc.StatusCode.UNAUTHENTICATED:  # type: ignore[attr-defined]
                    self.refresh(self._token_of(metadata))
                    metadata = self._auth_metadata()
                    continue
                raise rpc_failure(err, self.url) from None
        raise AssertionError("unreachable")

    def upload(self, method: Any, requests: Iterator[Any]) -> Any:
        """A client-streaming call. It cannot be retried (the requests are used up), so the
        token is made fresh before it starts."""
        try:
            return self._wait(method.future(requests, metadata=self._auth_metadata()))
        except grpc.RpcError as err:
            raise rpc_failure(err, self.url) from None

    def stream(self, method: Any, request: Any) -> Iterator[Any]:
        """A server stream's messages. UNAUTHENTICATED before the first message is retried once
        with a refreshed token; the call is cancelled when the caller stops early."""
        metadata = self._auth_metadata()
        for retried in (False, True):
            responses = method(request, metadata=metadata)
            try:
                first = next(responses, None)
            except grpc.RpcError as err:
                responses.cancel()
                if not retried and err.code() == grpc.StatusCode.UNAUTHENTICATED:  # type: ignore[attr-defined]
                    self.refresh(self._token_of(metadata))
                    metadata = self._auth_metadata()
                    continue
                raise rpc_failure(err, self.url) from None
            return self._rest_of(responses, first)
        raise AssertionError("unreachable")

    def _rest_of(self, responses: Any, first: Any) -> Iterator[Any]:
        try:
            if first is None:
                return
            yield first
            yield from responses
        except grpc.RpcError as err:
            raise rpc_failure(err, self.url) from None
        finally:
            responses.cancel()

    @staticmethod
    def _wait(future: Any) -> Any:
        # result() with a short timeout, again and again: a plain blocking call would not let
        # Ctrl-C through until the server answered.
        try:
            while True:
                try:
                    return future.result(timeout=_POLL_SECONDS)
                except grpc.FutureTimeoutError:
                    continue
        except KeyboardInterrupt:
            future.cancel()
            raise
