#!/usr/bin/env python3
"""A complete Gradients customer over NATS: upload a data set, submit a task, watch it,
download the winning model. Only nats-py, protobuf and cryptography are needed, plus the
Python classes protoc generates from proto/gradients/v1/*.proto (see docs/integrating.md).

    python3 customer_client.py --nats nats://127.0.0.1:4222 --key customer.key \
        --data data.jsonl --type instruct --base-model tiny-1m --hours 1 \
        --column instruction=question --column output=answer --out winner/

Exit status: 0 scored (and downloaded), 2 the task failed or was cancelled or rejected,
1 any other error (printed with the service's error code).
"""

import argparse
import asyncio
import hashlib
import os
import secrets
import sys
import time
import uuid

import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from gradients.v1 import common_pb2, intake_pb2, task_pb2

REQUEST_DOMAIN = b"gradients/customer-request/v1"
FINAL = {task_pb2.SCORED, task_pb2.FAILED, task_pb2.CANCELLED, task_pb2.REJECTED}


class ServiceError(Exception):
    """An API error: the HTTP-like status, the stable ErrorCode name, its message, and
    where in the data set (row, column) when the error is about a place in it."""

    def __init__(self, headers):
        headers = headers or {}
        self.status = headers.get("Nats-Service-Error-Code", "")
        self.code = headers.get("Gradients-Error-Code", "")
        self.row = headers.get("Gradients-Error-Row")
        self.column = headers.get("Gradients-Error-Column")
        self.reference = headers.get("Gradients-Error-Reference")
        message = headers.get("Nats-Service-Error", "")
        where = f" (row {self.row}, column {self.column})" if self.row else ""
        ref = f" [reference {self.reference}]" if self.reference else ""
        super().__init__(f"{self.status} {self.code}: {message}{where}{ref}")


class Customer:
    """A signing customer: every request carries the key, the time, a fresh nonce and an
    ed25519 signature over (domain, subject, time, nonce, sha256(body))."""

    def __init__(self, nc, seed: bytes):
        self.nc = nc
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.id = "c" + hashlib.sha256(self.public).hexdigest()[:40]

    def sign(self, subject: str, body: bytes) -> dict:
        at = str(int(time.time() * 1000))
        nonce = secrets.token_hex(16)
        signed = b"\0".join(
            [subject.encode(), at.encode(), nonce.encode(), hashlib.sha256(body).digest()]
        )
        signature = self.key.sign(REQUEST_DOMAIN + b"\0" + signed)
        return {
            "Gradients-Customer-Key": self.public.hex(),
            "Gradients-Request-At": at,
            "Gradients-Request-Nonce": nonce,
            "Gradients-Request-Signature": signature.hex(),
        }

    async def call(self, endpoint: str, request, response_type, timeout=30.0):
        subject = f"gradients.api.tasks.{endpoint}"
        body = request.SerializeToString(deterministic=True)
        reply = await self.nc.request(subject, body, timeout=timeout, headers=self.sign(subject, body))
        if reply.headers and "Nats-Service-Error-Code" in reply.headers:
            raise ServiceError(reply.headers)
        answer = response_type()
        answer.ParseFromString(reply.data)
        return answer


async def upload(customer: Customer, data: bytes) -> common_pb2.ObjectRef:
    """Asks intake for this customer's own bucket, then puts the data set there."""
    prepared = await customer.call(
        "upload", intake_pb2.PrepareUploadRequest(), intake_pb2.PrepareUploadResponse
    )
    if len(data) > prepared.max_bytes:
        raise SystemExit(f"the data set is {len(data)} bytes; intake takes at most {prepared.max_bytes}")
    store = await customer.nc.jetstream().object_store(prepared.bucket)
    name = f"upload-{uuid.uuid4()}"
    await store.put(name, data)
    return common_pb2.ObjectRef(
        bucket=prepared.bucket, name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )


async def watch(customer: Customer, task_id: str, every: float = 2.0) -> task_pb2.Task:
    """Follows the task through its states until it is final (intake's projection of the
    status events), printing each change."""
    last = None
    while True:
        task = (await customer.call("get", intake_pb2.GetTaskRequest(task_id=task_id), intake_pb2.GetTaskResponse)).task
        if task.status != last:
            reason = f": {task.status_reason}" if task.status_reason else ""
            print(f"{task_pb2.TaskStatus.Name(task.status).lower()}{reason}", flush=True)
            last = task.status
        if task.status in FINAL:
            return task
        await asyncio.sleep(every)


async def download(customer: Customer, task_id: str, out: str) -> intake_pb2.TaskResultResponse:
    """Has intake stage the winner's files in this customer's bucket, then reads each one,
    checked against the sha256 intake names (the one the miner's signed manifest names)."""
    result = await customer.call(
        "result",
        intake_pb2.TaskResultRequest(task_id=task_id, stage_download=True),
        intake_pb2.TaskResultResponse,
        timeout=300.0,
    )
    js = customer.nc.jetstream()
    for file in result.files:
        store = await js.object_store(file.object.bucket)
        data = (await store.get(file.object.name)).data
        digest = hashlib.sha256(data).hexdigest()
        if digest != file.object.sha256 or len(data) != file.object.size:
            raise SystemExit(f"{file.path}: sha256 {digest}, expected {file.object.sha256}")
        path = os.path.join(out, file.path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print(f"{file.path}  {len(data)} bytes  sha256 {digest}")
    return result


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default=os.environ.get("GRADIENTS__NATS__URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--user", default=os.environ.get("GRADIENTS__NATS__AUTH__USER"))
    parser.add_argument("--password", default=os.environ.get("GRADIENTS__NATS__AUTH__PASSWORD"))
    parser.add_argument("--key", required=True, help="the key file `gradients customer keygen` writes (seed, hex)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--type", default="instruct", choices=["instruct", "chat", "dpo", "grpo"])
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--column", action="append", default=[], help="ROLE=COLUMN")
    parser.add_argument("--name", default="python-client")
    parser.add_argument("--idempotency-key", default=None)
    parser.add_argument("--out", required=True, help="where the winning model goes")
    args = parser.parse_args()

    seed = bytes.fromhex(open(args.key).read().strip())
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    customer_id = "c" + hashlib.sha256(public).hexdigest()[:40]
    # Replies come only under the customer's own inbox prefix (the deploy permissions).
    options = {"servers": [args.nats], "inbox_prefix": f"_INBOX_{customer_id}".encode()}
    if args.user:
        options.update(user=args.user, password=args.password)
    nc = await nats.connect(**options)
    try:
        customer = Customer(nc, seed)
        data = open(args.data, "rb").read()
        dataset = await upload(customer, data)
        columns = dict(pair.split("=", 1) for pair in args.column)
        request = intake_pb2.SubmitTaskRequest(
            # The same key after a lost reply returns the same task, never a second one.
            idempotency_key=args.idempotency_key or str(uuid.uuid4()),
            name=args.name,
            type=task_pb2.TaskType.Value(args.type.upper()),
            base_model=args.base_model,
            columns=columns,
            hours_to_complete=args.hours,
            dataset=dataset,
        )
        submitted = await customer.call("submit", request, intake_pb2.SubmitTaskResponse)
        task_id = submitted.task.id
        print(f"task {task_id} ({'created' if submitted.created else 'already submitted'})")
        task = await watch(customer, task_id)
        if task.status != task_pb2.SCORED:
            return 2
        result = await download(customer, task_id, args.out)
        r = result.result
        print(f"winner {r.winner_miner_id}, test loss {r.winner_loss:.4f}")
        return 0
    except ServiceError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
