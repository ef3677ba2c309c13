"""Profile kgem's training step or evaluation for one configuration with torch.profiler: the top operators.

    PYTHONPATH=bench .venv/bin/python -m compare.profile_kgem --config C1 [--batches 5] [--rows 15]

Training configurations profile ``--batches`` optimizer steps (the same calls ``train_epoch`` makes) after two
warm-up steps; E1/E2 profile ``evaluate`` on ``--eval-limit`` test triples. Prints the operator table sorted by
self CPU time (to stdout) and the seconds per batch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from compare.common import DATA, SETTINGS, limit_threads, load_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, choices=list(SETTINGS))
    parser.add_argument("--data", default=str(DATA / "fb15k237"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--eval-limit", type=int, default=200)
    parser.add_argument("--rows", type=int, default=15, help="operators to show")
    parser.add_argument("--sort", default="self_cpu_time_total")
    parser.add_argument("--shapes", action="store_true", help="one row per operator and input shapes")
    args = parser.parse_args()
    limit_threads(args.threads)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from compare.run_kgem import approach_of, build
    from kgem.data import KnownTriples
    from kgem.evaluation import evaluate
    from kgem.training import LOSSES, build_optimizer

    setting = SETTINGS[args.config]
    data = load_data(args.data)
    model = build(setting, data.num_entities, data.num_relations, 0)
    if setting.approach == "eval":
        known = KnownTriples(torch.from_numpy(np.concatenate([data.train, data.valid, data.test])),
                             data.num_entities, data.num_relations)
        test = torch.from_numpy(data.test[: args.eval_limit])
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
            start = time.perf_counter()
            evaluate(model, test, known=known)
        print(f"{args.config}: evaluate of {len(test)} triples in {time.perf_counter() - start:.3f} s (profiled)")
    else:
        approach = approach_of(setting)
        rows = approach.prepare(torch.from_numpy(data.train), model)
        loss = LOSSES.get(setting.loss)(**setting.loss_args)
        optimizer = build_optimizer(setting.optimizer, model.parameters(), lr=setting.lr)
        generator = torch.Generator().manual_seed(0)

        def step() -> None:
            batch = rows[torch.randint(len(rows), (setting.batch_size,), generator=generator)]
            optimizer.zero_grad(set_to_none=True)
            fit, _ = approach.step(model, batch, loss, generator)
            fit.backward()
            optimizer.step()
            model.constrain_()

        for _ in range(2):
            step()
        start = time.perf_counter()
        for _ in range(args.batches):
            step()
        plain = (time.perf_counter() - start) / args.batches
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
            for _ in range(args.batches):
                step()
        print(f"{args.config}: {plain:.4f} s per batch of {setting.batch_size} unprofiled "
              f"({setting.batch_size / plain:,.0f} rows/s)")
    table = prof.key_averages(group_by_input_shape=args.shapes).table(sort_by=args.sort, row_limit=args.rows,
                                                                       max_name_column_width=40)
    print(table)


if __name__ == "__main__":
    main()
