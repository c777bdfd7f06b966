"""How fast the policy engine decides: ``evaluate`` per shipped policy, and ``load_policy`` (compile) apart.

Generates ``--products`` random product facts (``ProductFacts``: random
classes, unknown class among them; log-uniform resolutions of 0.2 m to 40 m;
band counts, SAR phase and acquisition times, each sometimes unknown;
footprints scattered around the Israel zone of ``us-kyl-bingaman``, around the
example negative-list zone of ``de-satdsiv`` and over the rest of the world,
some unknown) with random requests (recipients, some none, some approvals; a
fixed release time), and evaluates every product against every shipped policy
(``rules/*.toml``). Prints one table:

* compile ms: the best of ``--rounds`` ``load_policy`` calls (read, schema
  validation, compiling the conditions, reading and preparing the zones);
* decisions/s and µs/decision: the best of ``--rounds`` passes over all
  products, with the footprint cache (``facts.footprint_geometry``, which
  holds 4096 parsed footprints) warm, and with it cleared before each pass
  (``cold``: every footprint's WKT parsed again, as for products never seen);
* the decisions the pass gave (allow / resample / mask / block), to show the
  generated products reach every rule.

Only the library and the policy files are used. Run from the repository root::

    python benchmarks/bench_policy.py [--products 4000] [--rounds 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rspolicy.model import Action, ProductClass, Recipient, Request
from rspolicy.policy import Policy, ProductFacts, evaluate, load_policy, policy_names
from rspolicy.policy.facts import footprint_geometry

#: The release time of every request: ages are counted to it.
AT = datetime(2026, 12, 3, tzinfo=UTC)
#: Where footprints are scattered (west, south, east, north), with weights.
AREAS = (
    ((33.0, 28.5, 37.0, 34.5), 0.45),  # around the Israel zone of us-kyl-bingaman
    ((-31.0, -1.0, -28.0, 2.0), 0.15),  # around the example negative-list zone of de-satdsiv
    ((-180.0, -80.0, 180.0, 80.0), 0.30),  # anywhere else
)
UNKNOWN_FOOTPRINT = 0.10
RECIPIENTS = ("DE", "FR", "US", "JP", "BR", "IN", "CN", "IL", "FR:CNES", "BR:INPE", "JP:JAXA", None)
BANDS = {ProductClass.PANCHROMATIC: (1, 1), ProductClass.MULTISPECTRAL: (3, 8), ProductClass.HYPERSPECTRAL: (30, 250),
         ProductClass.THERMAL: (1, 3), ProductClass.SAR: (1, 4)}


def _footprint(rng: random.Random) -> tuple[str, ...]:
    """One footprint polygon (WKT, lon lat), or none (unknown)."""
    if rng.random() < UNKNOWN_FOOTPRINT:
        return ()
    (west, south, east, north), = rng.choices([a for a, _ in AREAS], weights=[w for _, w in AREAS])
    width, height = rng.uniform(0.02, 0.6), rng.uniform(0.02, 0.6)
    x, y = rng.uniform(west, east - width), rng.uniform(south, north - height)
    ring = [(x, y), (x + width, y + 0.1 * height), (x + width, y + height), (x, y + 0.9 * height), (x, y)]
    return ("POLYGON((" + ", ".join(f"{lon:.6f} {lat:.6f}" for lon, lat in ring) + "))",)


def generate(count: int, seed: int) -> list[tuple[ProductFacts, Request]]:
    """``count`` random products and requests (the same for a given seed)."""
    rng = random.Random(seed)
    classes = [*BANDS, ProductClass.UNKNOWN]
    out = []
    for _ in range(count):
        product_class = rng.choice(classes)
        low, high = BANDS.get(product_class, (1, 250))
        bands = frozenset() if rng.random() < 0.1 else frozenset({rng.randint(low, high)})
        if product_class in (ProductClass.SAR, ProductClass.UNKNOWN):
            phase = frozenset() if rng.random() < 0.2 else frozenset({rng.random() < 0.5})
        else:
            phase = frozenset({False})
        acquired = () if rng.random() < 0.1 else (AT - timedelta(days=rng.uniform(0.0, 30.0)),)
        facts = ProductFacts.of(product_class, round(10 ** rng.uniform(-0.7, 1.6), 3), band_counts=bands,
                                sar_phase=phase, acquired=acquired, acquired_unknown=not acquired,
                                footprints=_footprint(rng))
        who = rng.choice(RECIPIENTS)
        recipient = None if who is None else Recipient(*who.split(":")) if ":" in who else Recipient(who)
        approval = "REF-1" if rng.random() < 0.1 else None
        out.append((facts, Request(recipient, None, approval, AT)))
    return out


def best_of(fn: Callable[[], object], rounds: int, before: Callable[[], object] | None = None) -> float:
    """Best wall seconds of ``fn`` over ``rounds`` runs after a warm-up (``before`` runs untimed before each)."""
    fn()
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=4000, help="generated products (default 4000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes, the best counts (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the products (default 1)")
    parser.add_argument("--policy", action="append", metavar="NAME",
                        help="only this policy (repeatable; default: every shipped policy)")
    args = parser.parse_args()
    names = args.policy or [name for name, _ in policy_names()]
    cases = generate(args.products, args.seed)

    start = time.perf_counter()
    load_policy(names[0])  # the first load imports jsonschema, shapely, pycountry: not part of any row
    first_load = time.perf_counter() - start

    rows = []
    for name in names:
        def compile_it(name: str = name) -> Policy:
            return load_policy(name)

        compile_s = best_of(compile_it, args.rounds)
        policy: Policy = load_policy(name)
        decisions: Counter[str] = Counter()

        def run(policy: Policy = policy) -> None:
            for facts, request in cases:
                evaluate(policy, facts, request=request)

        warm = best_of(run, args.rounds)
        cold = best_of(run, args.rounds, before=footprint_geometry.cache_clear)
        for facts, request in cases:
            decisions[evaluate(policy, facts, request=request).action.value] += 1
        rows.append((name, len(policy.rules), len(policy.zones), compile_s, warm, cold, decisions))

    print(f"{args.products} generated products (seed {args.seed}), best of {args.rounds} passes; "
          f"first load_policy (imports included): {first_load * 1e3:.0f} ms")
    actions = [a.value for a in (Action.ALLOW, Action.RESAMPLE, Action.MASK, Action.BLOCK)]
    print(f"{'policy':<18} {'rules':>5} {'zones':>5} {'compile ms':>10} {'decisions/s':>12} {'µs/decision':>11} "
          f"{'cold dec/s':>11} {'cold µs':>8}  " + " ".join(f"{a:>8}" for a in actions))
    for name, rules, zones, compile_s, warm, cold, decisions in rows:
        n = args.products
        print(f"{name:<18} {rules:>5} {zones:>5} {compile_s * 1e3:>10.2f} {n / warm:>12.0f} {warm / n * 1e6:>11.1f} "
              f"{n / cold:>11.0f} {cold / n * 1e6:>8.1f}  " + " ".join(f"{decisions[a]:>8}" for a in actions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
