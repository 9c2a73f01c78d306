#!/usr/bin/env bash
# Runs one s2jax command on every worker of a Cloud TPU VM pod slice: copy the repo, install
# (with the gcs extra), run. jax.distributed finds the pod's coordinator by itself.
#   launch/tpu_pod.sh [--dry-run] --tpu NAME --zone ZONE [--project P] -- <s2jax args...>
#
# The run root: the workers share no file system, so give `s2jax run` one on Cloud Storage that
# every worker reaches, e.g. `-- run CONFIG --run-dir gs://BUCKET/runs/NAME` (the TPU VMs' service
# account needs read/write on BUCKET). Each worker works in a local copy under ~/.cache/s2jax/
# remote/ that process 0 publishes to the root at every barrier and the others pull; process 0
# alone writes artifacts and logs; orbax checkpoints go to gs://BUCKET/runs/NAME/train/
# checkpoints/ from every worker; rerunning the same command resumes from the root. Sweeps
# (`s2jax sweep`, `run --sweep`) need a shared POSIX file system and refuse a gs:// root.
set -euo pipefail
dry=0; tpu=""; zone=""; project=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$tpu" && -n "$zone" ]] || { echo "tpu_pod.sh: --tpu and --zone are required" >&2; exit 2; }
[[ $# -gt 0 ]] || { echo "tpu_pod.sh: no s2jax arguments after --" >&2; exit 2; }
where=(--zone "$zone" --worker=all)
[[ -n "$project" ]] && where+=(--project "$project")
repo="$(cd "$(dirname "$0")/.." && pwd)"
args=$(printf '%q ' "$@")
steps=(
  "gcloud compute tpus tpu-vm scp --recurse $(printf '%q' "$repo") $tpu:~/s2jax ${where[*]}"
  "gcloud compute tpus tpu-vm ssh $tpu ${where[*]} --command 'cd ~/s2jax && pip install -q -e \".[gcs]\" \"jax[tpu]\"'"
  "gcloud compute tpus tpu-vm ssh $tpu ${where[*]} --command 'cd ~/s2jax && python3 -m s2jax.cli ${args% }'"
)
for step in "${steps[@]}"; do
  if [[ $dry -eq 1 ]]; then echo "$step"; else eval "$step"; fi
done
