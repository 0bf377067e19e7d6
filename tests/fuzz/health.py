"""After a fuzz run: the service is healthy and a normal create / append / read still works."""

from __future__ import annotations

import uuid

import httpx


def assert_healthy(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    user = f"after-fuzz-{uuid.uuid4().hex[:8]}"
    created = http.post("/v1/sessions", json={"user_id": user})
    assert created.status_code == 201, created.text
    sid = created.json()["session_id"]
    appended = http.post(
        f"/v1/sessions/{sid}/messages", json={"messages": [{"role": "user", "content": "still here?"}]}
    )
    assert appended.status_code == 201, appended.text
    page = http.get(f"/v1/sessions/{sid}/messages")
    assert page.status_code == 200, page.text
    assert [m["content"] for m in page.json()["messages"]] == ["still here?"]
