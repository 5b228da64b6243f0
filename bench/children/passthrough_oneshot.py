"""The benchmark's pass-through oneshot child: stdin's params go out as one output event."""

import json
import sys

task = json.load(sys.stdin)
out = [{"stream": "out", "type": "deployment.validated", "data": task["params"]}]
print(json.dumps({"success": True, "outputs": out}))
