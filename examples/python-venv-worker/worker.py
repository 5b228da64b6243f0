"""A printery pool worker with its own virtualenv: counts the words of ``params.text``.

Pool protocol 1: say ``ready``, then answer each ``task``
line with one ``result`` line; ``ping`` gets ``pong``; ``shutdown`` or the end
of stdin ends it. stdout is the protocol only, so the log (structlog 21, a
version printery's own environment cannot take) goes to stderr, where the
daemon re-logs it line by line under this worker's name.
"""

import json
import sys

import structlog

structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
log = structlog.get_logger()


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def handle(task):
    params = task.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("text"), str):
        return {"success": False, "retriable": False, "error": "params.text must be a string"}
    if task.get("type") not in ("text.submitted", "worker.check"):
        return {"success": False, "retriable": False, "error": f"unknown type {task.get('type')!r}"}
    send({"op": "progress", "id": task["id"], "percent": 50, "step": "counting"})
    words = len(params["text"].split())
    log.info("counted", id=task["id"], words=words)
    counted = {"text": params["text"], "words": words, "structlog": structlog.__version__}
    return {
        "success": True,
        "result": {"words": words},
        "outputs": [{"stream": "text:counted", "type": "text.counted", "data": counted}],
    }


def main():
    send({"op": "ready", "protocol": 1})
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("not_json", line=line[:80])
            continue
        op = message.get("op") if isinstance(message, dict) else None
        if op == "ping":
            send({"op": "pong"})
        elif op == "shutdown":
            return
        elif op == "task":
            answer = handle(message)
            send({"op": "result", "id": message.get("id"), **answer})


if __name__ == "__main__":
    main()
