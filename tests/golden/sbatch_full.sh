#!/bin/bash
# soraplan launch --cluster slurm: soraplan-6B, world 32 = tp 4 x pp 1 x cp 1 x dp 8 on 4 node(s) x 8 GPU(s)
# Hand submission:  mkdir -p /lustre/proj/runs/sora-6b && sbatch THIS_FILE   (Slurm opens --output before the script runs)
#SBATCH --job-name=sora-6b
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=1800G
#SBATCH --partition=gpu
#SBATCH --account=video-ml
#SBATCH --qos=high
#SBATCH --time=2-00:00:00
#SBATCH --output=/lustre/proj/runs/sora-6b/%x_%j.out
#SBATCH --error=/lustre/proj/runs/sora-6b/%x_%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR2@300
set -uo pipefail

RUN_DIR=/lustre/proj/runs/sora-6b
MAX_RETRIES=5
mkdir -p "$RUN_DIR"

# Environment: always-on settings + NCCL profile 'infiniband' + the --debug bundle
export PYTHONUNBUFFERED=1
export CUDA_DEVICE_MAX_CONNECTIONS=1
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export OMP_NUM_THREADS=1
export NCCL_DEBUG=INFO
export NCCL_IB_DISABLE=0
export NCCL_SOCKET_IFNAME='^lo,docker0'
export NCCL_IB_GID_INDEX=3
export NCCL_NET_GDR_LEVEL=PHB
export NCCL_DEBUG_SUBSYS=INIT,NET,ENV
export TORCH_DISTRIBUTED_DEBUG=DETAIL
export TORCH_SHOW_CPP_STACKTRACES=1
export PYTHONFAULTHANDLER=1
export TORCH_CPP_LOG_LEVEL=INFO
export WANDB_MODE=offline
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
  tp: 4
  pp: 1
  vpp: 1
  cp: 1
  cp_comm: p2p
  dp: 8
  gpus: 32
  sequence_parallel: true
  micro_batch: 1
  global_batch: null
  recompute: none
  recompute_layers: null
  distributed_optimizer: true
hardware:
  gpu: h100-sxm
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

# --debug bundle: environment, allocation, GPUs and network of every node into $RUN_DIR/debug/$SLURM_JOB_ID/
DEBUG_DIR="$RUN_DIR/debug/$SLURM_JOB_ID"
mkdir -p "$DEBUG_DIR"
scontrol show job "$SLURM_JOB_ID" > "$DEBUG_DIR/job.txt" 2>&1 || true
srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c \
  'h=$(hostname); { env | sort; nvidia-smi topo -m; ip -br addr; } > "$0/node-$SLURM_NODEID-$h.txt" 2>&1' "$DEBUG_DIR" || true

# Time limit / preemption: Slurm sends USR2 to this shell 300 s before the limit (--signal=B:USR2@...).
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
  /opt/venv/bin/python -m soraplan train --config /lustre/proj/runs/sora-6b/spec.yaml --run-dir /lustre/proj/runs/sora-6b --resume auto --steps 100000 --save-every 500 --log-every 50 &
SRUN_PID=$!
wait "$SRUN_PID"
exit $?
