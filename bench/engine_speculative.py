"""Speculative decoding: tok/s through ``enclave serve`` against plain llama.cpp.

Targets (issue 17): on edit prompts (fix, rename, annotate, translate over real files of
this repository) >= 2.5x the tok/s of llama.cpp without speculation, on fresh prompts
(explain, new code, Chinese prose) >= 1.0x; at temperature 0 the texts are identical.

Method: ONE ``enclave serve --parallel 1`` runs with ``engine.speculative`` set to the
type measured (``--speculative``, default the setting's default), and beside it ONE plain
llama.cpp server: ``python -m enclave.engine.child --speculative off``, the same xllamacpp
server, model file, threads, context and slot count as the gateway's child, without
drafting. Both can be pinned to the same cores (``--cpus``). Each round sends every
prompt to both, alternating which goes first; requests are streamed, temperature 0,
seed fixed, and timed at the client from the first to the last content delta
(``bench.engine_stream.stream_once``). A prompt's ratio is the median over rounds of
speculative tok/s / plain tok/s; a group's is the geometric mean of its prompts'.

    ENCLAVE_HOME=/tmp/eh .venv/bin/python bench/engine_speculative.py \\
        --model qwen2.5-coder-1.5b-instruct --cpus 0,1 --threads 2 --rounds 2
    ... --quick          # 2 edit + 1 fresh prompt, 1 round, 96 tokens: a smoke run

Exit status: 0 targets met and texts identical, 1 a target missed or a text differs,
2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from bench.common import console_script, warn_if_busy  # noqa: E402
from bench.engine_stream import Sample, engine_child, stream_once  # noqa: E402
from enclave.config import EngineSettings  # noqa: E402
from tests.fakes.procs import ProcessFailed, free_port, run_process  # noqa: E402

HOST = "127.0.0.1"
EDIT_TARGET, FRESH_TARGET = 2.5, 1.0
PLAIN, SPEC = "plain", "speculative"
SRC = REPO_ROOT / "src" / "enclave"


@dataclass(frozen=True)
class Prompt:
    name: str
    group: str  # edit | fresh
    text: str


def _source(relative: str) -> str:
    return (SRC / relative).read_text(encoding="utf-8")


def _function(relative: str, name: str) -> str:
    """One top-level function of a source file, as written."""
    text = _source(relative)
    start = text.index(f"\ndef {name}(") + 1
    end = text.find("\n\n\n", start)
    return text[start : end if end > 0 else None]


def edit_prompts() -> list[Prompt]:
    runtime = _source("engine/runtime.py")
    buggy = _percentile().replace("high = min(low + 1, len(ordered) - 1)", "high = low + 1")
    untyped = (
        _function("engine/runtime.py", "child_command")
        .replace("settings: EngineSettings", "settings")
        .replace("model: Path", "model")
        .replace("port: int", "port")
        .replace("draft: Path | None = None", "draft=None")
        .replace(") -> list[str]:", "):")
    )
    compose = (REPO_ROOT / "deploy" / "compose" / "enclave.yaml").read_text(encoding="utf-8")
    return [
        Prompt("rename", "edit", "Rename the class Engine to LocalEngine everywhere in this "
               f"file. Answer with the whole file only.\n\n```python\n{runtime}```"),
        Prompt("fix", "edit", "This function fails with an IndexError on some inputs. Fix the "
               f"bug and answer with the whole function only.\n\n```python\n{buggy}\n```"),
        Prompt("annotate", "edit", "Add type annotations to this function. Answer with the "
               f"whole function only.\n\n```python\n{untyped}\n```"),
        Prompt("translate", "edit", "Translate this YAML configuration to JSON, keeping every "
               f"comment-free value. Answer with the JSON only.\n\n```yaml\n{compose}```"),
    ]  # fmt: skip


def _percentile() -> str:
    text = (REPO_ROOT / "bench" / "common.py").read_text(encoding="utf-8")
    start = text.index("def percentile(")
    return text[start : text.index("\n\n\n", start)]


def fresh_prompts() -> list[Prompt]:
    return [
        Prompt("explain", "fresh", "Explain how speculative decoding speeds up a language "
               "model on a CPU, for a developer."),
        Prompt("new-code", "fresh", "Write a Python function that parses durations such as "
               "'1h30m', '45s' or '2d' into seconds, with a docstring and tests."),
        Prompt("chinese", "fresh", "用中文写一段三百字左右的短文，"
               "介绍私有化部署的人工智能助手对银行的好处。"),
    ]  # fmt: skip


def ceiling_prompt() -> Prompt:
    """A verbatim copy: every draft of the prompt's text is right, so its ratio is the
    most drafting can give on this host (what a batch saves over one token at a time)."""
    source = _source("engine/runtime.py")
    ask = "Repeat this file exactly, with no change. Answer with the whole file only."
    return Prompt("copy", "ceiling", f"{ask}\n\n```python\n{source}```")


def prompt_set(quick: bool, ceiling: bool = False) -> list[Prompt]:
    edits, fresh = edit_prompts(), fresh_prompts()
    chosen = [*edits[:2], fresh[0]] if quick else [*edits, *fresh]
    return [*chosen, ceiling_prompt()] if ceiling else chosen


def body(model: str, prompt: Prompt, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt.text}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
    }


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


@contextlib.contextmanager
def servers(args: argparse.Namespace, home: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The gateway (speculative) and the plain server: their URLs and the model's name."""
    port = free_port()
    engine = {"model": args.model, "parallel": 1, "ctx_size": args.ctx_size,
              "embeddings": False, "ocr": False, "speculative": args.speculative,
              "speculative_draft_max": args.draft_max,
              "speculative_ngram_match": args.ngram_match}  # fmt: skip
    engine |= {"threads": args.threads} if args.threads else {}
    config = home / "speculative.yaml"
    config.write_text(yaml.safe_dump({"port": port, "engine": engine}))
    cmd = pinned([console_script("enclave"), "--config", str(config), "serve"], args.cpus)
    gateway = f"http://{HOST}:{port}"
    with run_process(cmd, health_url=f"{gateway}/health", timeout=args.start_timeout):
        health = httpx.get(f"{gateway}/health", trust_env=False, timeout=10).json()
        _, _, child = engine_child(health)
        plain_port = free_port()
        plain = [sys.executable, "-m", "enclave.engine.child", "--speculative", "off",
                 "--model", _arg(child, "--model"), "--port", str(plain_port),
                 "--threads", _arg(child, "--threads"), "--ctx-size", _arg(child, "--ctx-size"),
                 "--parallel", "1", "--alias", _arg(child, "--alias")]  # fmt: skip
        url = f"http://{HOST}:{plain_port}"
        with run_process(pinned(plain, args.cpus), health_url=f"{url}/health", timeout=300):
            urls = {PLAIN: f"{url}/v1/chat/completions", SPEC: f"{gateway}/v1/chat/completions"}
            yield urls, _arg(child, "--alias")
            print(acceptance(httpx.get(f"{gateway}/metrics", trust_env=False, timeout=10).text))


def acceptance(metrics: str) -> str:
    """The gateway's drafted and accepted token counters, summed over models."""
    totals = dict.fromkeys(("draft", "accepted"), 0.0)
    for line in metrics.splitlines():
        for kind in totals:
            if line.startswith(f"enclave_speculative_{kind}_tokens_total"):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    drafted, accepted = totals["draft"], totals["accepted"]
    share = f" ({accepted / drafted:.0%})" if drafted else ""
    return f"drafted {drafted:.0f} tokens, accepted {accepted:.0f}{share}"


def _arg(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def measure(args: argparse.Namespace, urls: dict[str, str], model: str) -> list[Sample]:
    samples: list[Sample] = []
    fresh = httpx.Limits(max_keepalive_connections=0)  # see bench/engine_stream.py
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(900.0), limits=fresh) as client:
        for rnd in range(args.rounds):
            for index, prompt in enumerate(prompt_set(args.quick, args.ceiling)):
                order = (PLAIN, SPEC) if (rnd + index) % 2 == 0 else (SPEC, PLAIN)
                for path in order:
                    s = stream_once(client, urls[path], body(model, prompt, args), path, rnd)
                    s.path = f"{path}:{prompt.name}"
                    samples.append(s)
                    print(f"  round {rnd} {prompt.name:10} {path:12} {s.decode_tps:6.1f} tok/s"
                          f"  {s.tokens} tokens", flush=True)  # fmt: skip
    return samples


def summarize(samples: list[Sample], prompts: list[Prompt]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for prompt in prompts:
        plain = [s for s in samples if s.path == f"{PLAIN}:{prompt.name}"]
        spec = [s for s in samples if s.path == f"{SPEC}:{prompt.name}"]
        ratios = [b.decode_tps / a.decode_tps for a, b in zip(plain, spec, strict=True)]
        rows[prompt.name] = {
            "group": prompt.group,
            "plain_tps": statistics.median(s.decode_tps for s in plain),
            "speculative_tps": statistics.median(s.decode_tps for s in spec),
            "ratio": statistics.median(ratios),
            "same_text": {s.text for s in plain} == {s.text for s in spec}
            and len({s.text for s in plain}) == 1,
            "tokens": plain[0].tokens,
        }
    groups = {g: _geomean([r["ratio"] for r in rows.values() if r["group"] == g])
              for g in ("edit", "fresh")}  # fmt: skip
    out = {"prompts": rows, "edit_ratio": groups["edit"], "fresh_ratio": groups["fresh"]}
    if "copy" in rows:
        out["ceiling_ratio"] = rows["copy"]["ratio"]
    return out


def _geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def report(summary: dict[str, Any], args: argparse.Namespace) -> bool:
    print(f"\nengine_speculative  model={args.model}  speculative={args.speculative}  "
          f"draft_max={args.draft_max}  ngram_match={args.ngram_match}  "
          f"threads={args.threads or 'auto'}  cpus={args.cpus}  rounds={args.rounds}  "
          f"max_tokens={args.max_tokens}")  # fmt: skip
    print(f"{'prompt':12}{'group':7}{'plain tok/s':>13}{'spec tok/s':>12}{'ratio':>8}  same text")
    for name, r in summary["prompts"].items():
        print(f"{name:12}{r['group']:7}{r['plain_tps']:13.1f}{r['speculative_tps']:12.1f}"
              f"{r['ratio']:7.2f}x  {'yes' if r['same_text'] else 'NO'}")  # fmt: skip
    edit_ok = summary["edit_ratio"] >= EDIT_TARGET
    fresh_ok = summary["fresh_ratio"] >= FRESH_TARGET
    same = all(r["same_text"] for r in summary["prompts"].values())
    if "ceiling_ratio" in summary:
        print(f"ceiling (a verbatim copy, every draft right): {summary['ceiling_ratio']:.2f}x")
    print(f"edit prompts:  {summary['edit_ratio']:.2f}x (target >= {EDIT_TARGET}x)  "
          f"{'PASS' if edit_ok else 'FAIL'}")  # fmt: skip
    print(f"fresh prompts: {summary['fresh_ratio']:.2f}x (target >= {FRESH_TARGET}x)  "
          f"{'PASS' if fresh_ok else 'FAIL'}")  # fmt: skip
    print(f"identical text at temperature 0: {'yes' if same else 'NO'}")
    return edit_ok and fresh_ok and same


def run(args: argparse.Namespace) -> int:
    warn_if_busy()
    with (
        tempfile.TemporaryDirectory(prefix="engine-speculative-") as tmp,
        servers(args, Path(tmp)) as (urls, model),
    ):
        samples = measure(args, urls, model)
    summary = summarize(samples, prompt_set(args.quick, args.ceiling))
    ok = report(summary, args)
    if args.json:
        texts = {s.path: s.text for s in samples if s.round == 0}
        Path(args.json).write_text(json.dumps({"summary": summary, "texts": texts}, indent=2))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    default = EngineSettings.model_fields["speculative"].default
    parser.add_argument("--speculative", default=default, help="engine.speculative")
    parser.add_argument("--draft-max", type=int, default=0, help="engine.speculative_draft_max")
    parser.add_argument("--ngram-match", type=int, default=0, help="engine.speculative_ngram_match")
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: one per core)")
    parser.add_argument("--cpus", help="pin both servers to these cores (taskset -c LIST)")
    parser.add_argument("--ctx-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ceiling", action="store_true",
                        help="also a verbatim copy: the most drafting gives here")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 prompts, 1 round, 96 tokens")
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--json", metavar="FILE", help="write the summary and texts here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.max_tokens = 1, min(args.max_tokens, 96)
    try:
        return run(args)
    except (ProcessFailed, TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
