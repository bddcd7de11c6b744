"""soraplan.templates: text templates (sbatch scripts, report HTML) shipped as package data."""
