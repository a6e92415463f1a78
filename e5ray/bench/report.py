"""The human-readable report of a benchmark result (the JSON holds every number; this picks the ones to read)."""

from __future__ import annotations

from typing import Any

from e5ray.bench.config import MAX_LENGTH
from e5ray.bench.corpus import MIN_TOKENS, TARGET_MEDIAN, TARGET_P95


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def format_report(result: dict[str, Any]) -> str:
    if result["config"]["device"] == "gpu":
        return _format_gpu_report(result)
    m, model, corpus, c = result["machine"], result["model"], result["corpus"]["stats"], result["ceiling"]
    cfg = result["config"]
    lines = [
        f"e5ray benchmark: shape {model['shape']} ({model['arch']}, {model['layers']}x{model['hidden']}, "
        f"ffn {model['intermediate']}, vocab {model['vocab_size']:,}, {model['non_embedding_params'] / 1e6:.1f}M "
        f"non-embedding params), {cfg['precision']}, {cfg['threads'] or m['cpus']} threads on {m['cpus']} CPUs "
        f"({m['cpu_model']})",
        f"versions: onnxruntime {m['onnxruntime']}, fastembed {m['fastembed']}, ray {m['ray']}, "
        f"tokenizers {m['tokenizers']}",
        f"corpus: {corpus['docs']} docs, {corpus['tokens']:,} real tokens; tokens/doc median {corpus['median']:.0f}, "
        f"p95 {corpus['p95']:.0f}, max {corpus['max']}, mean {corpus['mean']:.1f}, token-weighted mean "
        f"{corpus['token_weighted_mean']:.1f}, {corpus['at_max_length']} docs at 512 "
        f"(target: lognormal median ~{TARGET_MEDIAN:.0f}, p95 ~{TARGET_P95:.0f}, clip {MIN_TOKENS}..{MAX_LENGTH})",
        "",
        f"{'contestant':<40} {'docs':>6} {'real tok':>9} {'padded':>9} {'pad %':>6} {'seconds':>8} "
        f"{'tok/s':>8} {'tok/CPU-s':>9} {'peak RSS MB':>12} {'others CPU':>10}",
    ]
    labels = {
        "fastembed": "1 fastembed TextEmbedding.embed",
        "embedder_fp32": "2' E5Embedder fp32 (reference)",
        "embedder": f"2 E5Embedder in-process ({cfg['precision']})",
        "job": "3 e5ray job, local Ray",
    }
    for name, label in labels.items():
        r = result["contestants"].get(name)
        if r is None:
            continue
        rss = r.get("peak_rss_mb") if name != "job" else r["rss"]["job_mb"]
        others = (r.get("machine") or {}).get("others_cpu_share")
        lines.append(
            f"{label:<40} {r['docs']:>6} {r['tokens']:>9,} {r['padded_tokens']:>9,} "
            f"{100 * r['padding_share']:>6.1f} {r['seconds']:>8.2f} {r['tokens_per_s']:>8,.0f} "
            f"{r['tokens_per_cpu_s']:>9,.0f} {_fmt(rss, '>12,.0f')} "
            f"{_fmt(None if others is None else 100 * others, '>9.0f')}%"
        )
    lines.append(
        f"{'4 ceiling (ORT fp32 MatMul FLOP/s)':<40} {'':>6} {'':>9} {'':>9} {'':>6} {'':>8} {c['tokens_per_s']:>8,.0f}"
    )
    if "int8" in c:
        lines.append(
            f"{'4i ceiling (ORT int8 MatMulInteger)':<40} {'':>6} {'':>9} {'':>9} {'':>6} {'':>8} "
            f"{c['int8']['tokens_per_s']:>8,.0f}"
        )
    r = result["ratios"]
    lines += [
        "",
        f"ratios: 2/1 = {_fmt(r['embedder_vs_fastembed'], '.2f')}   3/1 = {_fmt(r['job_vs_fastembed'], '.2f')}"
        f"   3/2 = {_fmt(r['job_vs_embedder'], '.3f')}   2/4 = {_fmt(r['embedder_vs_ceiling'], '.3f')}",
    ]
    mm = c["matmul"]
    lines += [
        f"ceiling: ORT {mm['op']} ({mm['m']}x{mm['k']}) @ ({mm['k']}x{mm['n']}), {mm['threads']} threads, "
        f"{mm['reps']} reps: best {mm['gflops_best']:.1f} GFLOP/s, median {mm['gflops_median']:.1f}",
        f"  {c['formula']}",
        f"  ceiling = {mm['gflops_best']:.1f} GFLOP/s / {c['flops_per_token'] / 1e6:.2f} MFLOP = "
        f"{c['tokens_per_s']:,.0f} tokens/s (at the median GFLOP/s: {c['tokens_per_s_at_median_gflops']:,.0f}); "
        f"MatMul at start / end, best/median GFLOP/s: "
        + " / ".join(f"{m['gflops_best']:.0f}/{m['gflops_median']:.0f}" for m in c["matmul_runs"]),
        "  'others CPU': share of the machine's CPU time used by processes outside the stage while it ran "
        "(a shared machine: read timings with it)",
    ]
    if "int8" in c:
        m8 = c["int8"]["matmul"]
        lines.append(
            f"  int8: {m8['op']} best {m8['gflops_best']:.1f} GOP/s -> {c['int8']['tokens_per_s']:,.0f} tokens/s"
        )
    for name, r in result["contestants"].items():
        extra = []
        if name == "fastembed":
            extra = [
                f"load {r['load_seconds']:.1f}s",
                f"truncation max_length {r['max_length']}",
                f"own tokenizer: {r['own_tokens']:,} real / {r['own_padded_tokens']:,} padded",
            ]
        elif name.startswith("embedder"):
            extra = [
                f"tokenize {r['tokenize_seconds']:.2f}s + run {r['run_seconds']:.2f}s",
                f"{r['batches']} batches",
                f"budget {r['token_budget']}",
                f"max rows {r['max_batch_rows']}",
                f"threads {r['threads']}",
                f"load {r['load_seconds']:.1f}s",
            ]
        elif name == "job":
            extra = [
                f"Ray start + warm-up job {r['ray_start_seconds']:.1f}s (not counted)",
                f"{r['shards']} shards",
                f"shard wall {r['shard_seconds']:.2f}s",
                f"ONNX+pool {r['shard_embed_seconds']:.2f}s",
                f"manifest tokens/s {r['manifest_tokens_per_s']:,.0f}",
            ]
        lines.append(f"  {name}: " + ", ".join(extra))
    for name, a in result["agreement"].items():
        lines.append(f"vectors {name}: min cosine {a['min']:.6f}, mean {a['mean']:.6f} over {a['docs']} docs")
    if "job" in result["contestants"]:
        rss = result["contestants"]["job"]["rss"]
        lines.append(
            f"job memory (peak MB): driver {rss['driver_mb']:,.0f}, embedding actor {rss['actor_mb']:,.0f} "
            f"({rss['actors']} actor), other Ray workers {rss['other_ray_workers_mb']:,.0f} "
            f"({rss['other_ray_workers']}), Ray services {rss['ray_services_mb']:,.0f}; "
            f"all {rss['processes']} processes {rss['tree_total_mb']:,.0f}"
        )
    if "rss_scale" in result:
        s = result["rss_scale"]
        lines.append(
            f"job at {s['docs'][0]} vs {s['docs'][1]} docs: job peak (driver + actor) {s['job_mb'][0]:,.0f} -> "
            f"{s['job_mb'][1]:,.0f} MB (x{_fmt(s['job_ratio'], '.3f')}); actor {s['actor_mb'][0]:,.0f} -> "
            f"{s['actor_mb'][1]:,.0f}; all processes {s['tree_total_mb'][0]:,.0f} -> {s['tree_total_mb'][1]:,.0f} "
            f"(x{_fmt(s['tree_ratio'], '.3f')}); tokens/s {s['tokens_per_s'][0]:,.0f} -> "
            f"{s['tokens_per_s'][1]:,.0f} (x{_fmt(s['large_job_vs_embedder'], '.3f')} of the embedder)"
        )
    if "int8" in result:
        i = result["int8"]
        lines.append(
            f"int8: {i['tokens_per_s']:,.0f} tokens/s vs fp32 {_fmt(i['fp32_tokens_per_s'])} "
            f"(x{_fmt(i['speedup_vs_fp32'], '.2f')}); cosine to fp32 mean {_fmt(i['mean_cosine_vs_fp32'], '.5f')}, "
            f"min {_fmt(i['min_cosine_vs_fp32'], '.5f')}; gate-sample cosine {_fmt(i['gate_sample_cosine'], '.5f')}; "
            f"x{_fmt(i['vs_int8_ceiling'], '.3f')} of the int8 ceiling; quantising took "
            f"{i['quantize_seconds']:.1f}s, peak RSS {i['quantize_peak_rss_mb']:,.0f} MB (own process)"
        )
    if "sweep" in result:
        lines += ["", *format_sweep(result["sweep"])]
    lines += ["", "goals:"]
    for name, g in result["goals"].items():
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[g["met"]]
        lines.append(f"  [{mark}] {name} = {_fmt(g['value'], '.3f')} (goal {g['goal']})")
    lines.append(f"total {result['seconds_total']:.0f}s; JSON has every number; work files in {result['workdir']}")
    return "\n".join(lines)


def format_sweep(sweep: dict[str, Any]) -> list[str]:
    rows = sorted({c["max_rows"] for c in sweep["grid"]})
    budgets = sorted({c["token_budget"] for c in sweep["grid"]})
    cell = {(c["token_budget"], c["max_rows"]): c for c in sweep["grid"]}
    d = sweep["default"]
    corner = "budget \\ max rows"
    lines = [
        f"sweep: E5Embedder.run tokens/s (best of {sweep['reps']}) on {sweep['docs']} docs, {sweep['tokens']:,} "
        f"tokens, {sweep['threads']} threads; current default budget {d['token_budget']}, max rows {d['max_rows']}",
        f"{corner:>18} " + " ".join(f"{r:>8}" for r in rows) + "   pad % (at most rows)",
    ]
    for b in budgets:
        lines.append(
            f"{b:>18} "
            + " ".join(f"{cell[(b, r)]['tokens_per_s']:>8,.0f}" for r in rows)
            + f"   {100 * cell[(b, rows[-1])]['padding_share']:.1f}"
        )
    best = sweep["best"]
    lines.append(
        f"best: budget {best['token_budget']}, max rows {best['max_rows']}: {best['tokens_per_s']:,.0f} tokens/s"
    )
    s = sweep["spinning"]
    lines.append(
        f"ORT session.intra_op.allow_spinning (best tokens/s): embed() on {s['best']['on']['embed']:,.0f} / "
        f"off {s['best']['off']['embed']:,.0f} -> {s['faster']['embed']} faster; tokenise-ahead pipeline "
        f"({s['pipelined_chunk_rows']}-row chunks) on {s['best']['on']['pipelined']:,.0f} / off "
        f"{s['best']['off']['pipelined']:,.0f} -> {s['faster']['pipelined']} faster"
    )
    return lines


def _format_gpu_report(result: dict[str, Any]) -> str:
    model, corpus, c, f16 = result["model"], result["corpus"]["stats"], result["ceiling"], result["fp16"]
    a = result["agreement"]["fp16_vs_fp32"]
    lines = [
        f"e5ray GPU benchmark on {result['machine'].get('gpu')}: shape {model['shape']} ({model['arch']}, "
        f"{model['layers']}x{model['hidden']}), fp16",
        f"corpus: {corpus['docs']} docs, {corpus['tokens']:,} real tokens; median {corpus['median']:.0f}, "
        f"p95 {corpus['p95']:.0f}, max {corpus['max']}, mean {corpus['mean']:.1f}",
        f"fp16 E5Embedder: {f16['tokens_per_s']:,.0f} tokens/s ({f16['seconds']:.2f}s, {f16['batches']} batches, "
        f"padding {100 * f16['padding_share']:.1f}%, budget {f16['token_budget']}, max rows {f16['max_batch_rows']}, "
        f"load+convert {f16['load_seconds']:.1f}s)",
        f"ceiling: {c['peak_flops'] / 1e12:.0f} TFLOP/s ({c['note']}) / {c['flops_per_token'] / 1e6:.1f} MFLOP = "
        f"{c['tokens_per_s']:,.0f} tokens/s; {c['formula']}",
        f"fp16 / ceiling = {_fmt(result['ratios']['fp16_vs_ceiling'], '.3f')}",
        f"fp16 vs fp32 (GPU) on {a['docs']} docs: min cosine {a['min']:.6f}, mean {a['mean']:.6f} "
        f"({'PASS' if a['met'] else 'FAIL'}, goal >= 0.999); fp32 sample {result['fp32_sample']['tokens_per_s']:,.0f} tokens/s",
    ]
    fe = result.get("fastembed")
    if fe:
        if "error" in fe:
            lines.append(f"fastembed on CUDA: did not run ({fe['error']})")
        else:
            lines.append(
                f"fastembed on CUDA (fp32, batch 256): {fe['tokens_per_s']:,.0f} tokens/s on {fe['docs']} docs, "
                f"padding {100 * fe['padding_share']:.1f}%; fp16 e5ray / fastembed = "
                f"{_fmt(result['ratios']['fp16_vs_fastembed'], '.2f')}"
            )
    for name, g in result["goals"].items():
        mark = "PASS" if g["met"] else "FAIL"
        lines.append(f"  [{mark}] {name} = {_fmt(g['value'], ',.4f')} (goal {g['goal']})")
    lines.append(f"total {result['seconds_total']:.0f}s")
    return "\n".join(lines)
