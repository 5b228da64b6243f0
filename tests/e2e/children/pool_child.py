"""A pool-protocol child for the end-to-end tests; what it does is chosen per message.

``params.do``:

- ``echo`` (default): one output to ``proc:out`` carrying ``in_id``
- ``progress``: two progress lines and a log line, then echo
- ``env``: echo with its environment's names and its cwd
- ``crash``: exit 3 mid-message; ``hang``: never answer
- ``flood``: 300 KB on stderr, then echo; ``bigline``: a 5 MB line on stdout
- ``leak``: hold 80 MB, then echo
- ``forbidden``: an output to a stream outside the allow-list
- ``fail``: ``success: false``, ``retriable`` from params

``CHILD_START=exit2`` exits 2 before ``ready`` (``once:<path>``: all but the
first child do); ``CHILD_SHUTDOWN=ignore``
ignores ``shutdown``, stdin's end and SIGTERM; ``CHILD_PING=ignore`` never
answers a ping. Only the standard library:
any Python 3 runs it.
"""

import json
import os
import signal
import sys
import time

HELD = []


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def echo(task, **extra):
    params = task.get("params") or {}
    data = {"in_id": task["id"], "pid": os.getpid(), "n": params.get("n")}
    data.update(extra)
    send(
        {
            "op": "result",
            "id": task["id"],
            "success": True,
            "result": {"pid": os.getpid()},
            "outputs": [{"stream": "proc:out", "type": "proc.done", "data": data}],
        }
    )


def handle(task):
    params = task.get("params") or {}
    do = params.get("do", "echo")
    if do == "progress":
        send({"op": "progress", "id": task["id"], "percent": 40, "step": "resizing"})
        send(
            {"op": "log", "id": task["id"], "level": "info", "message": "halfway", "data": {"k": 1}}
        )
        send({"op": "progress", "id": task["id"], "percent": 90})
        echo(task)
    elif do == "env":
        echo(task, env=sorted(os.environ), cwd=os.getcwd())
    elif do == "crash":
        os._exit(3)
    elif do == "hang":
        time.sleep(3600)
    elif do == "flood":
        for i in range(3000):
            sys.stderr.write(f"flood line {i:05d} " + "x" * 90 + "\n")
        sys.stderr.flush()
        echo(task)
    elif do == "bigline":
        sys.stdout.write('{"op": "log", "message": "' + "y" * (5 << 20) + '"}\n')
        sys.stdout.flush()
        time.sleep(3600)
    elif do == "leak":
        HELD.append(bytearray(80 << 20))
        for i in range(0, len(HELD[-1]), 4096):
            HELD[-1][i] = 1
        echo(task)
    elif do == "forbidden":
        send(
            {
                "op": "result",
                "id": task["id"],
                "success": True,
                "outputs": [{"stream": "secret:stream", "type": "x", "data": {}}],
            }
        )
    elif do == "fail":
        send(
            {
                "op": "result",
                "id": task["id"],
                "success": False,
                "retriable": bool(params.get("retriable", True)),
                "error": "asked to fail",
            }
        )
    else:
        echo(task)


def main():
    start = os.environ.get("CHILD_START", "")
    if start == "exit2":
        sys.stderr.write("broken on purpose\n")
        sys.exit(2)
    if start.startswith("once:"):  # the first child runs; every later one exits 2 before ready
        try:
            os.close(os.open(start[5:], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            sys.stderr.write("broken on purpose\n")
            sys.exit(2)
    ignore = os.environ.get("CHILD_SHUTDOWN") == "ignore"
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    send({"op": "ready", "protocol": 1})
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            sys.stderr.write("not JSON, ignored\n")
            continue
        op = message.get("op")
        if op == "ping":
            if os.environ.get("CHILD_PING") != "ignore":
                send({"op": "pong"})
        elif op == "shutdown":
            if not ignore:
                return
        elif op == "task":
            if "id" not in message:
                send(
                    {
                        "op": "result",
                        "id": None,
                        "success": False,
                        "retriable": False,
                        "error": "no id",
                    }
                )
                continue
            handle(message)
    if ignore:
        time.sleep(3600)


main()
