"""One benchmark result as one JSON object with stable keys, and the rule for comparing two of them.

The keys are documented in ``docs/benchmark-json.md``; where a number means what ``benchmark_app``'s
report means, the key is named after it (``latency_median_ms`` ~ "latency (ms)", ``latency_avg_ms`` ~
"avg latency", ``throughput_fps`` ~ "throughput", ``compile_time_ms`` ~ "compile model time (ms)",
``first_inference_ms`` ~ "first inference time (ms)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeprune.measurement.protocol import LatencyStats

SCHEMA = "edgeprune.measurement/1"
_LATENCY_FIELDS = ("median_ms", "avg_ms", "min_ms", "max_ms", "p90_ms", "p99_ms", "std_ms", "cv")
#: Settings that change what a latency *is*; two results that differ in any of them are not comparable.
_SETTINGS = ("batch", "input_shape", "threads", "hint")


@dataclass(frozen=True)
class Comparison:
    """Whether two results may be compared, and if not, every reason why."""

    ok: bool
    reasons: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


def result_dict(*, model: str, model_format: str, arch: str | None, backend: str, device: str, device_name: str,
                device_plugin: str | None, precision_used: str, settings: dict[str, Any], input_source: str,
                input_detail: str, times_ms: dict[str, float], latency: LatencyStats, rounds: int, cv_met: bool,
                e2e: LatencyStats, throughput: dict[str, Any], environment: dict[str, Any],
                timestamp: str) -> dict[str, Any]:
    """Assemble the documented JSON object (flat numbers; ``settings`` and ``environment`` nested)."""
    out: dict[str, Any] = {
        "schema": SCHEMA, "timestamp": timestamp, "model": model, "model_format": model_format, "arch": arch,
        "backend": backend, "device": device, "device_name": device_name, "device_plugin": device_plugin,
        "precision_used": precision_used,
        "settings": settings, "input_source": input_source, "input_detail": input_detail,
        **{k: round(float(times_ms[k]), 4) for k in
           ("read_time_ms", "compile_time_ms", "load_time_ms", "first_inference_ms")},
    }
    out.update({f"latency_{f}": _round(getattr(latency, f)) for f in _LATENCY_FIELDS})
    out.update({"latency_iterations": latency.iterations, "rounds": rounds, "cv_met": cv_met})
    out.update({f"e2e_latency_{f}": _round(getattr(e2e, f)) for f in _LATENCY_FIELDS})
    out["e2e_iterations"] = e2e.iterations
    out.update(throughput)
    out["environment"] = environment
    return out


def _round(value: float) -> float:
    return round(float(value), 6)


def comparable(a: dict[str, Any], b: dict[str, Any]) -> Comparison:
    """May the latencies of ``a`` and ``b`` be compared (ratios, speed-ups)? If not, say why.

    Model and backend may differ — comparing those is the point — but the machine, the threads, the batch
    and input shape, the precision actually used, the device and the hint must not.
    """
    reasons = []
    ea, eb = a["environment"], b["environment"]
    for key in ("cpu_model", "affinity_cpus"):
        if ea.get(key) != eb.get(key):
            reasons.append(f"different machines: {key} {ea.get(key)!r} vs {eb.get(key)!r}")
    sa, sb = a["settings"], b["settings"]
    for key in _SETTINGS:
        if sa.get(key) != sb.get(key):
            reasons.append(f"different {key}: {sa.get(key)!r} vs {sb.get(key)!r}")
    for key in ("device", "precision_used"):
        if a.get(key) != b.get(key):
            reasons.append(f"different {key}: {a.get(key)!r} vs {b.get(key)!r}")
    if a["backend"] == b["backend"]:
        package = a["backend"]  # the registry names are the packages' names
        va, vb = ea["versions"].get(package), eb["versions"].get(package)
        if va != vb:
            reasons.append(f"different {a['backend']} versions: {va} vs {vb}")
    return Comparison(not reasons, reasons)


def text_summary(r: dict[str, Any]) -> list[str]:
    """The human-readable lines ``edgeprune bench`` prints (the JSON has everything)."""
    s, env = r["settings"], r["environment"]
    steady = f"CV {r['latency_cv']:.3f}" + ("" if r["cv_met"] else f" > {s['cv_threshold']} (not steady)")
    return [
        f"{r['model']} ({r['model_format']}) on {r['backend']} {r['device']} [{r['device_name']}], "
        f"precision {r['precision_used']}, batch {s['batch']}, {s['threads']} threads, hint {s['hint']}",
        f"inputs: {r['input_detail']}",
        f"load {r['load_time_ms']:.1f} ms (read {r['read_time_ms']:.1f} + compile {r['compile_time_ms']:.1f}), "
        f"first inference {r['first_inference_ms']:.2f} ms",
        f"latency  median {r['latency_median_ms']:.3f} ms  mean {r['latency_avg_ms']:.3f}  "
        f"min {r['latency_min_ms']:.3f}  max {r['latency_max_ms']:.3f}  p90 {r['latency_p90_ms']:.3f}  "
        f"p99 {r['latency_p99_ms']:.3f}  "
        f"({r['latency_iterations']} iterations, round {r['rounds']}, {steady})",
        f"end-to-end median {r['e2e_latency_median_ms']:.3f} ms  mean {r['e2e_latency_avg_ms']:.3f}  "
        f"p99 {r['e2e_latency_p99_ms']:.3f}  (prepare + upload + infer + download)",
        f"throughput {r['throughput_fps']:.1f} FPS ({r['throughput_streams'] or 'device-chosen'} streams, "
        f"{r['throughput_requests']} requests, {r['throughput_iterations']} inferences)",
        f"machine: {env['cpu_model']}, {env['affinity_cpus']} CPUs usable, load {env['loadavg_1m']}",
    ]
