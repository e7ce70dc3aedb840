"""The evaluator benchmark's reference: the same ONNX file and the same batches, run by
onnxruntime's Python API with the same thread settings. Prints one JSON line.

usage: ort_reference.py MODEL.onnx BATCHES.bin REPEATS INTRA INTER
BATCHES.bin: per batch, u32 rows and u32 length (little-endian), then rows*length int64
input ids and as many int64 attention-mask values.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def read_batches(path):
    data = open(path, "rb").read()
    batches, offset = [], 0
    while offset < len(data):
        rows, length = np.frombuffer(data, dtype="<u4", count=2, offset=offset)
        offset += 8
        n = int(rows) * int(length)
        ids = np.frombuffer(data, dtype="<i8", count=n, offset=offset).reshape(rows, length)
        offset += 8 * n
        mask = np.frombuffer(data, dtype="<i8", count=n, offset=offset).reshape(rows, length)
        offset += 8 * n
        batches.append((ids, mask))
    return batches


def main():
    model, batches_path, repeats, intra, inter = sys.argv[1:6]
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(intra)
    options.inter_op_num_threads = int(inter)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    batches = read_batches(batches_path)
    tokens = sum(int(mask.sum()) for _, mask in batches)
    for ids, mask in batches:  # warm-up, as the Rust side does
        session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
    started = time.perf_counter()
    for _ in range(int(repeats)):
        for ids, mask in batches:
            session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
    seconds = time.perf_counter() - started
    print(json.dumps({"tokens": tokens * int(repeats), "seconds": seconds, "version": ort.__version__}))


if __name__ == "__main__":
    main()
