"""`/healthz` (the process is alive) and `/readyz` (it can do its work: MongoDB and Kafka answer).

Readiness runs every check at once with a short time-out and names each part that failed, so an
operator reading a 503 knows where to look.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hirestream.shared.web.problems import Problem, problem_response

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0


async def _run(check: Check) -> str | None:
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return "no answer within 2 s"
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:300]
    return None


def health_router(checks: Mapping[str, Check]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Kafka and MongoDB are reachable",
        responses={503: {"description": "a dependency is down; the body names it"}},
    )
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(_run(check) for check in checks.values()))
        failing = {name: why for name, why in zip(checks, results, strict=True) if why}
        if failing:
            return problem_response(
                Problem(
                    503,
                    "not ready: " + ", ".join(failing),
                    title="Service Unavailable",
                    headers={"Retry-After": "5"},
                    checks={name: failing.get(name, "ok") for name in checks},
                )
            )
        return JSONResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok")})

    return router
