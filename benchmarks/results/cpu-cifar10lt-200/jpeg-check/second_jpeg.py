"""A second JPEG generation of ../shared CIFAR-10 (quality 75, PIL's default 4:2:0, the block
grid shifted by 4 px so it does not line up with the first one): train and test alike.

Usage: python second_jpeg.py ../shared/data/cifar-10-batches-py OUT_DIR
"""

import io
import os
import pickle
import sys

import numpy as np
from PIL import Image

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src)):
    with open(os.path.join(src, name), "rb") as f:
        d = pickle.load(f, encoding="latin1")
    if "data" in d:
        x = d["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        out = np.empty_like(x)
        for i, img in enumerate(x):
            big = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="edge")
            buf = io.BytesIO()
            Image.fromarray(big).save(buf, "JPEG", quality=75)
            buf.seek(0)
            out[i] = np.asarray(Image.open(buf).convert("RGB"))[4:36, 4:36]
        d["data"] = out.transpose(0, 3, 1, 2).reshape(len(out), -1)
        print(name, "mean |change|", float(np.abs(out.astype(float) - x).mean()))
    with open(os.path.join(dst, name), "wb") as f:
        pickle.dump(d, f)
