# run 2 (parallel listing, before step timings); output renamed from driver-10000-units-checkpoints.json
PYTHONPATH=$PWD timeout 2400 python jobs/bench_driver.py --small-files 5000 --split-files 50 --row-groups 100 --kill-after 5000 --scale-manifest-to 0 --stop-after-resume-plan --json-out bench-results/driver-10000-units-checkpoints.json
