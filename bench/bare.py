"""The framework ceiling: FastAPI validating the registration body, answering a constant 201.

The same body model as the service's POST /users/{userId}/registrations
(strict, unknown fields refused, eventId pattern), no storage. The load
generator shares the machine's cores with the server, so this measures what
client and framework together can do here: no storage design can beat it.

    PORT=8002 python -m bench.bare
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.schemas import RegistrationCreate

app = FastAPI(title="Bare endpoint", docs_url=None, redoc_url=None, openapi_url=None)

REPLY = {
    "userId": "bare",
    "eventId": "bare",
    "status": "confirmed",
    "registeredAt": "2027-01-01T00:00:00.000000Z",
    "eventTitle": "Bare",
    "eventDate": "2027-01-01",
}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/users/{user_id}/registrations", status_code=201)
async def register(user_id: str, body: RegistrationCreate) -> dict[str, Any]:
    return REPLY


if __name__ == "__main__":
    from bench.servers import serve

    serve(app)
