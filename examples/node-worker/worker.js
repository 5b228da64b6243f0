#!/usr/bin/env node
// A printery pool worker in Node: reverses the words a word-count worker counted.
//
// Pool protocol 1: one JSON object per line each way. It says
// "ready", answers each "task" with one "result", "ping" with "pong", and ends on
// "shutdown" or the end of stdin. Its log goes to stderr; stdout is the protocol only.
"use strict";

const readline = require("node:readline");

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function handle(task) {
  const params = task.params;
  if (params === null || typeof params !== "object" || typeof params.text !== "string") {
    return { success: false, retriable: false, error: "params.text must be a string" };
  }
  const reversed = params.text.split(/\s+/).filter(Boolean).reverse().join(" ");
  console.error(`reversed ${task.id}: ${params.words ?? "?"} words`);
  return {
    success: true,
    result: { reversed },
    outputs: [{ stream: "text:reversed", type: "text.reversed", data: { reversed, node: process.version } }],
  };
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    console.error("not JSON, ignored");
    return;
  }
  if (message === null || typeof message !== "object") return;
  if (message.op === "ping") send({ op: "pong" });
  else if (message.op === "shutdown") lines.close();
  else if (message.op === "task") send({ op: "result", id: message.id ?? null, ...handle(message) });
});
lines.on("close", () => process.exit(0));
send({ op: "ready", protocol: 1 });
