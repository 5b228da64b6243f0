"""The benchmark's pass-through pool child: each task's params go out as one output event."""

import json
import sys

write = sys.stdout.write
flush = sys.stdout.flush
write('{"op": "ready", "protocol": 1}\n')
flush()
for line in sys.stdin:
    message = json.loads(line)
    op = message["op"]
    if op == "task":
        answer = {
            "op": "result",
            "id": message["id"],
            "success": True,
            "outputs": [
                {"stream": "out", "type": "deployment.validated", "data": message["params"]}
            ],
        }
        write(json.dumps(answer) + "\n")
        flush()
    elif op == "ping":
        write('{"op": "pong"}\n')
        flush()
    elif op == "shutdown":
        break
