"""ComfyUI as a layer: its install as roots, its asset API, the workflow check."""
