"""ComfyUI as a layer over assetd: its folders, categories and asset API."""
