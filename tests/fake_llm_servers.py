"""Tiny local HTTP servers that speak the OpenAI chat completions and Anthropic Messages wire formats.

The real SDKs talk to them over HTTP on 127.0.0.1, so the provider code is tested end to end
without patching SDK internals. Each server plays scripted ``(status, json body)`` responses in
order and records every request (path, headers, JSON body).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLMServer:
    def __init__(self, responses: list[tuple[int, dict[str, Any]]]) -> None:
        self._responses = list(responses)
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                with server._lock:
                    server.requests.append(
                        Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
                    )
                    if server._responses:
                        status, body = server._responses.pop(0)
                    else:
                        status, body = 500, {"error": {"message": "fake server: no scripted response left"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def fake_server(responses: list[tuple[int, dict[str, Any]]]) -> Iterator[FakeLLMServer]:
    server = FakeLLMServer(responses).start()
    try:
        yield server
    finally:
        server.stop()


# --- OpenAI chat completions -------------------------------------------------------------------------


def openai_reply(text: str | None = None, tool_calls: list[tuple[str, str, dict[str, Any]]] = ()) -> tuple[int, dict]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for cid, name, args in tool_calls
        ]
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-gpt",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def openai_error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


# --- Anthropic messages -----------------------------------------------------------------------------------


def anthropic_reply(text: str | None = None, tool_uses: list[tuple[str, str, dict[str, Any]]] = ()) -> tuple[int, dict]:
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    for tid, name, args in tool_uses:
        content.append({"type": "tool_use", "id": tid, "name": name, "input": args})
    return 200, {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "fake-claude",
        "content": content,
        "stop_reason": "tool_use" if tool_uses else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 13, "output_tokens": 5, "cache_read_input_tokens": 2},
    }


def anthropic_error(status: int, message: str) -> tuple[int, dict]:
    return status, {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
