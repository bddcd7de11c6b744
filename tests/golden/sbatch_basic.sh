#!/bin/bash
# soraplan launch --cluster slurm: soraplan-6B, world 4 = tp 2 x pp 1 x cp 1 x dp 2 on 2 node(s) x 2 GPU(s)
# Hand submission:  mkdir -p /scratch/runs/demo && sbatch THIS_FILE   (Slurm opens --output before the script runs)
#SBATCH --job-name=demo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --gpus-per-node=2
#SBATCH --cpus-per-task=2
#SBATCH --time=0-01:00:00
#SBATCH --output=/scratch/runs/demo/%x_%j.out
#SBATCH --error=/scratch/runs/demo/%x_%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR2@120
set -uo pipefail

RUN_DIR=/scratch/runs/demo
MAX_RETRIES=3
mkdir -p "$RUN_DIR"

# Environment: always-on settings + NCCL profile 'default'
export PYTHONUNBUFFERED=1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export OMP_NUM_THREADS=1
export NCCL_DEBUG=WARN
# The spec this run trains, verbatim (quoted heredoc: nothing in it expands).
cat > "$RUN_DIR/spec.yaml.tmp" <<'SORAPLAN_SPEC_EOF'
name: soraplan-6B
video:
  frames: 960
  height: 256
  width: 256
  fps: 24.0
  vae_stride_t: 4
  vae_stride_s: 8
  latent_channels: 16
  causal_first_frame: false
  patch_t: 2
  patch_h: 2
  patch_w: 2
  text_tokens: 512
  text_dim: 4096
  tokens: null
model:
  name: soraplan-6B
  layers: 40
  hidden: 3072
  heads: 24
  ffn_hidden: 12288
  cross_attn: true
  adaln: single
  attention: full
  conditioning: text
  num_classes: 1000
  learn_sigma: false
  timestep_freq_dim: 256
  long_skip: false
  tokens_in_sequence: 0
  qkv_bias: true
  time_mlp: true
  learned_pos_embed: false
kernels:
  attention_kernel: flash
  dropout: 0.0
  activation_dtype: bf16
  param_dtype: bf16
  grad_dtype: fp32
  master_dtype: fp32
  optimizer_dtype: fp32
  optimizer_states: 2
  cpu_semantics: false
parallel:
  tp: 2
  pp: 1
  vpp: 1
  cp: 1
  cp_comm: p2p
  dp: 2
  gpus: 4
  sequence_parallel: true
  micro_batch: 1
  global_batch: null
  recompute: none
  recompute_layers: null
  distributed_optimizer: true
hardware:
  gpu: a100-80g
  custom: null
  efficiency: null
  gemm_efficiency: null
  attention_efficiency: null
  hbm_efficiency: null
  usd_per_gpu_hour: null
  buffer_gib: 3.0
  calibration: null
training:
  samples: 10000000
  epochs: 1.0
  dataset: null
  compare_gpus:
  - 200
  - 300
  - 400
SORAPLAN_SPEC_EOF
mv -f "$RUN_DIR/spec.yaml.tmp" "$RUN_DIR/spec.yaml"

# A finished run is never restarted (train leaves this marker when it completes).
if [ -e "$RUN_DIR"/done ]; then
  echo "soraplan: run already finished ($RUN_DIR/done); nothing to do"
  exit 0
fi

# Rendezvous: rank 0 lives on the first node; the port is derived from the job id (same after a requeue).
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
MASTER_PORT=$(( 15000 + SLURM_JOB_ID % 20000 ))
export MASTER_ADDR MASTER_PORT
echo "soraplan: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}/$MAX_RETRIES nodes $SLURM_JOB_NODELIST master $MASTER_ADDR:$MASTER_PORT"

# Time limit / preemption: Slurm sends USR2 to this shell 120 s before the limit (--signal=B:USR2@...).
# Forward it to every task through srun (train checkpoints and exits), then requeue while retries remain;
# the requeued job resumes from the latest complete checkpoint (--resume auto).
on_usr2() {
  echo "soraplan: USR2: checkpointing all tasks"
  kill -USR2 "$SRUN_PID" 2>/dev/null || true
  wait "$SRUN_PID"
  if [ -e "$RUN_DIR"/done ]; then exit 0; fi
  if [ "${SLURM_RESTART_COUNT:-0}" -lt "$MAX_RETRIES" ]; then
    echo "soraplan: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  echo "soraplan: retries exhausted ($MAX_RETRIES); not requeueing"
  exit 1
}
trap on_usr2 USR2

# One task per GPU; each reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID.
srun --kill-on-bad-exit=1 \
  python3 -m soraplan train --config /scratch/runs/demo/spec.yaml --run-dir /scratch/runs/demo --resume auto --steps 40 --tiny --save-every 4 &
SRUN_PID=$!
wait "$SRUN_PID"
exit $?
