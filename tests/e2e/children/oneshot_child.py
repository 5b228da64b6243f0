"""A seed-style oneshot worker: ``{"id", "type", "params"}`` in, ``{"success", "result"}`` out.

It reads only what the seed's workers read. ``params.exit`` picks the exit
status (0 by default; 1 retriable, 2 permanent, 3 a crash); ``params.out``
adds an output to ``proc:out``; ``params.sleep`` waits first.
"""

import json
import sys
import time

task = json.load(sys.stdin)
params = task.get("params") or {}
time.sleep(float(params.get("sleep", 0)))
code = int(params.get("exit", 0))
if code == 0:
    answer = {
        "success": True,
        "result": {"doubled": 2 * int(params.get("n", 0)), "type": task["type"]},
    }
    if params.get("out"):
        answer["outputs"] = [
            {"stream": "proc:out", "type": "proc.done", "data": {"in_id": task["id"]}}
        ]
    print(json.dumps(answer))
else:
    print("failing on purpose", file=sys.stderr)
    print(json.dumps({"success": False, "error": f"asked to exit {code}"}))
sys.exit(code)
