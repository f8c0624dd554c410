#!/usr/bin/env python3
"""Independent cross-check of loadgen's client-side numbers.

Replays a request list written by `loadgen --dump-requests FILE` (one JSON object per line:
index, send_at_s, path, stream, body) against a server with aiohttp, on the same schedule and
concurrency limit, and prints mean TTFT, mean E2E and request throughput as JSON.

TTFT is the time to the first SSE chunk with non-empty content (choices[0].text or
choices[0].delta.content), as in loadgen and SGLang's bench_serving; throughput is completed
requests over the time from the first send to the last response.

Usage: python3 independent_client.py --base-url http://127.0.0.1:8000 \
           --requests requests.jsonl [--max-concurrency 40]
"""
import argparse
import asyncio
import json
import statistics
import time

import aiohttp


def content_of(chunk):
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    if "text" in c:
        return c.get("text") or ""
    return (c.get("delta") or {}).get("content") or ""


async def one(session, url, body, stream):
    start = time.perf_counter()
    ttft = None
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            await resp.read()
            return None
        if not stream:
            await resp.json()
            e2e = time.perf_counter() - start
            return e2e, e2e
        buf = b""
        async for data in resp.content.iter_any():
            if ttft is not None:
                continue  # only the first content chunk is parsed; the rest is just read
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                if ttft is None and content_of(json.loads(payload)):
                    ttft = time.perf_counter() - start
    e2e = time.perf_counter() - start
    return (ttft if ttft is not None else e2e), e2e


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--requests", required=True, help="file from loadgen --dump-requests")
    ap.add_argument("--max-concurrency", type=int, default=None)
    args = ap.parse_args()
    reqs = [json.loads(l) for l in open(args.requests) if l.strip()]
    sem = asyncio.Semaphore(args.max_concurrency or len(reqs) or 1)
    base = args.base_url.rstrip("/")
    results = []
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        t0 = time.perf_counter()

        async def fire(r):
            delay = t0 + r["send_at_s"] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with sem:
                try:
                    results.append(await one(session, base + r["path"], r["body"], r["stream"]))
                except aiohttp.ClientError:
                    results.append(None)

        await asyncio.gather(*(fire(r) for r in reqs))
        duration = time.perf_counter() - t0
    ok = [r for r in results if r is not None]
    print(json.dumps({
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration_s": round(duration, 3),
        "request_throughput": round(len(ok) / duration, 3),
        "mean_ttft_ms": round(statistics.mean(r[0] for r in ok) * 1000, 3) if ok else None,
        "mean_e2e_ms": round(statistics.mean(r[1] for r in ok) * 1000, 3) if ok else None,
    }))


if __name__ == "__main__":
    try:  # uvloop (pip install uvloop) cuts the client's own event-loop delay
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
