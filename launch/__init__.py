"""soraplan.launch: renderers and submit seams for Slurm and Kubernetes."""
