#!/usr/bin/env bash
# One prepared run on a lent GPU machine: the CUDA tests, then the device benchmarks and a
# paper-CNN Fig. 1 run. Each step has its own time limit, so one failure does not stop the rest.
# Files in OUT (the device tool brings back at most 8): one log, one JSON per benchmark, Fig. 1's JSON and PNG.
#   OUT=<dir> MNIST=<dir with MNIST's IDX .gz files> [ONLY="tests engines trainer rules fig1 fig2 fig6"]
#   [TRAINER_ENGINES="loop vmap fused"] [FIG_STEPS=1000] [FIG_LIMIT=150] [FIG1_EPS="0.1"] bash benchmarks/run_device_checks.sh
set -u
out=${OUT:?set OUT to the output directory}
mnist=${MNIST:-../shared/data/mnist}
only=${ONLY:-tests engines trainer rules fig1 fig2 fig6}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
log=$out/device_checks.log

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    case " $only " in *" ${name%%_*} "*) ;; *) return ;; esac
    echo "== $name (limit ${limit} s): $*" | tee -a "$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    echo "== $name: rc=$? after $((SECONDS - start)) s" | tee -a "$log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$log"
step tests 120 $py -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_rules_conformance.py -k cuda
step engines 60 $py benchmarks/bench_engines.py --device cuda --threads 16 --out "$out/engines_cuda.json"
for engine in ${TRAINER_ENGINES:-auto}; do
    step trainer_$engine 120 $py benchmarks/bench_trainer.py --device cuda --engine "$engine" --threads 16 \
        --budget 30 --data-dir "$mnist" --out "$out/trainer_cuda_$engine.json"
done
step rules 100 $py benchmarks/bench_device.py --device cuda --problems P3 --out "$out/device_cuda.json"
# shellcheck disable=SC2086  # FIG1_EPS is a list
step fig1 ${FIG_LIMIT:-150} $py paper_checks/fig1_iid.py --scale paper --device cuda --data-dir "$mnist" \
    --steps "${FIG_STEPS:-1000}" --eval-every 250 --eps ${FIG1_EPS:-0.1} --out "$out" --runs-dir /tmp/fig1_runs
step fig2 ${FIG_LIMIT:-150} $py paper_checks/fig2_krum_fails.py --scale paper --device cuda --data-dir "$mnist" \
    --steps "${FIG_STEPS:-1000}" --eval-every 250 --out "$out" --runs-dir /tmp/fig2_runs
step fig6 ${FIG_LIMIT:-150} $py paper_checks/fig6_alie.py --scale paper --device cuda --data-dir "$mnist" \
    --steps "${FIG_STEPS:-1000}" --eval-every 250 --out "$out" --runs-dir /tmp/fig6_runs
grep -E "passed|failed|rc=" "$log" | tail -n 20
