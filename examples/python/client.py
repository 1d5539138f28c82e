#!/usr/bin/env python3
"""A Pointsman client with grpcio: health, classify, route, report an outcome.

    examples/python/generate.sh                  # once: stubs into examples/python/gen/
    python3 examples/python/client.py 127.0.0.1:50051 "Write a haiku about rain"

With --check it also sends bad inputs and exits non-zero if the server
answers any of them wrongly (the serve tests run it that way).
Set POINTSMAN_TOKEN to send `authorization: Bearer TOKEN`.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("POINTSMAN_PY_GEN", os.path.join(HERE, "gen")))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from pointsman.v1 import router_pb2, router_pb2_grpc  # noqa: E402


def expect_error(call, code, field):
    try:
        call()
    except grpc.RpcError as e:
        if e.code() != code or field not in e.details():
            raise SystemExit(f"expected {code} naming {field!r}, got {e.code()} {e.details()!r}")
        return
    raise SystemExit(f"expected {code} naming {field!r}, got OK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("prompt", nargs="?", default="Write a Python function that reverses a string.")
    ap.add_argument("--target", type=float)
    ap.add_argument("--check", action="store_true", help="also check bad inputs are refused")
    args = ap.parse_args()

    channel = grpc.insecure_channel(args.address)
    token = os.environ.get("POINTSMAN_TOKEN")
    metadata = [("authorization", f"Bearer {token}")] if token else None

    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="pointsman.v1.Router"), timeout=10).status
    print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(status))
    assert status == health_pb2.HealthCheckResponse.SERVING

    router = router_pb2_grpc.RouterStub(channel)
    c = router.Classify(router_pb2.ClassifyRequest(prompt=args.prompt), timeout=30, metadata=metadata)
    print("classify:", c.classification.task, f"difficulty={c.classification.difficulty:.2f}")
    assert abs(sum(c.classification.task_scores.values()) - 1.0) < 1e-3

    req = router_pb2.RouteRequest(prompt=args.prompt, tenant="python-example")
    if args.target is not None:
        req.target = args.target
    r = router.Route(req, timeout=30, metadata=metadata)
    print("route:", r.model, "fallbacks:", list(r.fallbacks), "decision:", r.decision_id)
    for cand in r.candidates:
        print(f"  {cand.model}: P={cand.p_success:.3f} cost=${cand.expected_cost_usd:.6f}")
    # The router's own difficulty: 1 - the mean P over every catalog model.
    print(f"typical failure: {r.typical_failure:.4f}")
    if not r.excluded:  # every catalog model is a candidate
        mean_p = sum(c.p_success for c in r.candidates) / len(r.candidates)
        assert abs(r.typical_failure - (1 - mean_p)) < 1e-9, (r.typical_failure, mean_p)

    ack = router.ReportOutcome(
        router_pb2.ReportOutcomeRequest(decision_id=r.decision_id, model=r.model, score=1.0, latency_ms=850.0),
        timeout=30,
        metadata=metadata,
    )
    print("outcome recorded; outcomes for this decision:", ack.outcomes_for_decision)

    if args.check:
        IA, NF = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
        expect_error(lambda: router.Route(router_pb2.RouteRequest(prompt=""), metadata=metadata), IA, "prompt")
        expect_error(lambda: router.Route(router_pb2.RouteRequest(prompt="hi", target=2.0), metadata=metadata), IA, "target")
        expect_error(lambda: router.Classify(router_pb2.ClassifyRequest(prompt="z" * 100000), metadata=metadata), IA, "prompt")
        expect_error(
            lambda: router.ReportOutcome(router_pb2.ReportOutcomeRequest(decision_id="nope", model=r.model, score=1.0), metadata=metadata),
            NF, "decision_id")
        expect_error(
            lambda: router.ReportOutcome(router_pb2.ReportOutcomeRequest(decision_id=r.decision_id, model="gpt-9", score=1.0), metadata=metadata),
            NF, "model")
        expect_error(
            lambda: router.ReportOutcome(router_pb2.ReportOutcomeRequest(decision_id=r.decision_id, model=r.model, score=7.0), metadata=metadata),
            IA, "score")
        print("bad inputs: all refused with the right code and field")


if __name__ == "__main__":
    main()
