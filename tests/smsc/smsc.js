#!/usr/bin/env node
// An independent SMSC for smsdispatch's SMPP tests: the npm `smpp` package's server (another
// project's PDU codec and framing), scripted by the tests over a loopback HTTP control port.
//
//   node smsc.js --port P --control-port C --state DIR --account id:password [--account ...]
//                [--max-binds N] [--tls-key F --tls-cert F]
//
// What it does:
// * accepts bind_transmitter / bind_receiver / bind_transceiver for the configured accounts
//   (unknown system_id → ESME_RINVSYSID, wrong password → ESME_RINVPASWD, more than
//   --max-binds open binds of one account → ESME_RBINDFAIL) and counts concurrent binds;
// * answers submit_sm with a message id, or, as scripted over the control port, with
//   ESME_RTHROTTLED, ESME_RMSGQFUL, any other status, or not at all ("silent");
// * answers query_sm from its message store (or refuses it, when told to), enquire_link,
//   unbind, and anything unknown with generic_nack;
// * sends delivery receipts and mobile-originated messages on demand, re-sending those not
//   acknowledged by deliver_sm_resp when a receiver binds again;
// * records every PDU both ways (with its bytes) in DIR/pdus.jsonl, and every accepted
//   message in DIR/messages.jsonl, so that a restarted SMSC still knows them.
//
// Control port (loopback only, JSON):
//   GET  /state                    binds open now and at most, per account; counters
//   GET  /pdus?since=N             recorded PDUs from index N
//   POST /submit-answers {"answers": [{"status": "ESME_RTHROTTLED", "count": 3}, ...],
//                         "default": "ok" | "silent" | "late:<ms>" | "<ESME name>"}
//   POST /query {"supported": false}
//   POST /auto-receipts {"stat": "DELIVRD" | null}   a receipt right after each accepted submit
//   POST /receipt {"message_id", "stat", "err", "dlvrd", "tlvs": true, "state"}
//   POST /mo {"system_id", "source_addr", "destination_addr", "data_coding",
//             "parts": ["..", ".."], "concat": "udh8" | "udh16" | "sar" | "payload",
//             "message_id"}
//   POST /send-raw {"hex"}         writes these bytes to every bound session
//   POST /drop                     closes every SMPP connection (no unbind)
//   POST /unbind                   sends unbind on every bound session
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const smpp = require("smpp");

function parseArgs(argv) {
  const out = { accounts: {}, maxBinds: 0, port: 0, controlPort: 0, state: "." };
  for (let i = 2; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (key === "--port") out.port = Number(value);
    else if (key === "--control-port") out.controlPort = Number(value);
    else if (key === "--state") out.state = value;
    else if (key === "--max-binds") out.maxBinds = Number(value);
    else if (key === "--tls-key") out.tlsKey = value;
    else if (key === "--tls-cert") out.tlsCert = value;
    else if (key === "--account") {
      const at = value.indexOf(":");
      out.accounts[value.slice(0, at)] = value.slice(at + 1);
    } else throw new Error("unknown option " + key);
  }
  return out;
}

const opts = parseArgs(process.argv);
fs.mkdirSync(opts.state, { recursive: true });
const pduLog = path.join(opts.state, "pdus.jsonl");
const messageLog = path.join(opts.state, "messages.jsonl");

// Message store: id → {message_id, system_id, state, error, final_date}; reloaded on restart.
const messages = new Map();
let nextId = 1;
if (fs.existsSync(messageLog)) {
  for (const line of fs.readFileSync(messageLog, "utf8").split("\n")) {
    if (!line) continue;
    const m = JSON.parse(line);
    messages.set(m.message_id, { ...(messages.get(m.message_id) || {}), ...m });
    nextId = Math.max(nextId, parseInt(m.message_id, 16) + 1);
  }
}
function storeMessage(m) {
  messages.set(m.message_id, { ...(messages.get(m.message_id) || {}), ...m });
  fs.appendFileSync(messageLog, JSON.stringify(m) + "\n");
}

const recorded = [];
function record(entry) {
  entry.t = Date.now() / 1000;
  recorded.push(entry);
  fs.appendFileSync(pduLog, JSON.stringify(entry) + "\n");
}

// Plain data of a decoded PDU for the record: buffers as hex, short_message as its parts.
function plain(pdu) {
  const out = {};
  for (const key of Object.keys(pdu)) {
    if (key.startsWith("_") || typeof pdu[key] === "function") continue;
    const v = pdu[key];
    if (Buffer.isBuffer(v)) out[key] = { hex: v.toString("hex") };
    else if (v && typeof v === "object" && "message" in v) {
      out[key] = {
        udh: (v.udh || []).map((u) => u.toString("hex")),
        message: Buffer.isBuffer(v.message) ? { hex: v.message.toString("hex") } : v.message,
      };
    } else if (v instanceof Date) out[key] = v.toISOString();
    else out[key] = v;
  }
  return out;
}

// The raw bytes of every PDU read: the package reads a PDU from the socket in two steps
// (length, then the rest); we wrap the second to keep the bytes beside the decoded PDU.
smpp.PDU.fromStream = function (stream, commandLength) {
  const rest = stream.read(commandLength - 4);
  if (!rest) return false;
  const head = Buffer.alloc(4);
  head.writeUInt32BE(commandLength, 0);
  const raw = Buffer.concat([head, rest]);
  const pdu = new smpp.PDU(raw);
  Object.defineProperty(pdu, "_raw", { value: raw, enumerable: false });
  return pdu;
};

const STATUS = smpp.errors; // ESME_* name → number
const STATE_OF_STAT = {
  DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8, ENROUTE: 1,
};

// Scripted answers to submit_sm: a queue of {status, count}, then the default.
let answers = [];
let defaultAnswer = "ok";
let querySupported = true;
let autoReceipt = null; // a stat word: every accepted submit_sm gets that receipt at once
function nextAnswer() {
  while (answers.length && answers[0].count <= 0) answers.shift();
  if (answers.length) {
    answers[0].count -= 1;
    return answers[0].status;
  }
  return defaultAnswer;
}

const sessions = new Set();
let sessionSeq = 0;
const binds = {}; // system_id → {open, peak}
const counters = { submit_sm: 0, answered: 0, silent: 0, deliver_sm: 0, query_sm: 0 };
// deliver_sm waiting for deliver_sm_resp: key → {system_id, options}; re-sent on a new bind.
const unacked = new Map();
let deliverSeq = 0;

function bindsOf(systemId) {
  binds[systemId] = binds[systemId] || { open: 0, peak: 0, total: 0 };
  return binds[systemId];
}

function sendRecorded(session, pdu, onResponse) {
  // Recorded before it is written, so that a test reading the record after the answer
  // arrived always finds it. The package numbers requests in send() unless numbered already.
  if (!pdu.isResponse() && !pdu.sequence_number) {
    if (session.sequence === 0x7fffffff) session.sequence = 0;
    pdu.sequence_number = ++session.sequence;
  }
  record({
    dir: "out", session: session.sid, system_id: session.systemId || null,
    command: pdu.command, command_status: pdu.command_status,
    sequence_number: pdu.sequence_number, hex: pdu.toBuffer().toString("hex"),
  });
  return session.send(pdu, onResponse);
}

function onBind(session, pdu) {
  const expected = opts.accounts[pdu.system_id];
  let status = 0;
  if (session.mode) status = STATUS.ESME_RALYBND;
  else if (expected === undefined) status = STATUS.ESME_RINVSYSID;
  else if (expected !== pdu.password) status = STATUS.ESME_RINVPASWD;
  else if (opts.maxBinds && bindsOf(pdu.system_id).open >= opts.maxBinds) {
    status = STATUS.ESME_RBINDFAIL;
  }
  sendRecorded(session, pdu.response({ command_status: status, system_id: "smsc" }));
  if (status) {
    if (status !== STATUS.ESME_RALYBND) setTimeout(() => session.close(), 50);
    return;
  }
  session.systemId = pdu.system_id;
  session.mode = pdu.command.replace("bind_", "");
  const b = bindsOf(pdu.system_id);
  b.open += 1;
  b.total += 1;
  b.peak = Math.max(b.peak, b.open);
  if (session.mode !== "transmitter") {
    for (const [key, d] of unacked) {
      if (d.system_id === pdu.system_id && !d.session) deliver(session, key, d);
    }
  }
}

function canReceive(s) {
  return s.mode === "receiver" || s.mode === "transceiver";
}

function receiverOf(systemId) {
  for (const s of sessions) if (s.systemId === systemId && canReceive(s)) return s;
  return null;
}

function deliver(session, key, d) {
  d.session = session;
  const pdu = new smpp.PDU("deliver_sm", { ...d.options });
  sendRecorded(session, pdu, (resp) => {
    if (resp.command_status === 0) unacked.delete(key);
    else d.session = null;
  });
  counters.deliver_sm += 1;
}

function queueDelivery(systemId, options) {
  deliverSeq += 1;
  const key = "d" + deliverSeq;
  const d = { system_id: systemId, options, session: null };
  unacked.set(key, d);
  const s = receiverOf(systemId);
  if (s) deliver(s, key, d);
  return { key, sent: !!s };
}

function onSubmit(session, pdu) {
  counters.submit_sm += 1;
  if (!session.mode || session.mode === "receiver") {
    sendRecorded(session, pdu.response({ command_status: STATUS.ESME_RINVBNDSTS }));
    return;
  }
  const answer = nextAnswer();
  if (answer === "silent") {
    counters.silent += 1;
    return;
  }
  if (typeof answer === "string" && answer.startsWith("late:")) {
    // Taken, but answered only after this many milliseconds (past the client's timeout).
    setTimeout(() => accept(session, pdu), Number(answer.slice(5)));
    return;
  }
  if (answer !== "ok") {
    const status = typeof answer === "number" ? answer : STATUS[answer];
    sendRecorded(session, pdu.response({ command_status: status }));
    counters.answered += 1;
    return;
  }
  accept(session, pdu);
}

function accept(session, pdu) {
  const messageId = (nextId++).toString(16).padStart(8, "0");
  storeMessage({
    message_id: messageId, system_id: session.systemId, state: 1, error: 0,
    source_addr: pdu.source_addr, destination_addr: pdu.destination_addr,
    submit_date: Date.now() / 1000,
  });
  sendRecorded(session, pdu.response({ message_id: messageId }));
  counters.answered += 1;
  if (autoReceipt) setImmediate(() => receipt({ message_id: messageId, stat: autoReceipt }));
}

function onQuery(session, pdu) {
  counters.query_sm += 1;
  if (!querySupported) {
    sendRecorded(session, pdu.response({ command_status: STATUS.ESME_RINVCMDID }));
    return;
  }
  const m = messages.get(pdu.message_id);
  if (!m || m.system_id !== session.systemId) {
    sendRecorded(session, pdu.response({ command_status: STATUS.ESME_RQUERYFAIL }));
    return;
  }
  sendRecorded(session, pdu.response({
    message_id: m.message_id, final_date: m.final_date || "", message_state: m.state,
    error_code: m.error || 0,
  }));
}

function smppDate(seconds) {
  const d = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) +
    two(d.getUTCHours()) + two(d.getUTCMinutes());
}

function receipt(body) {
  const m = messages.get(body.message_id);
  if (!m) return { error: "unknown message_id" };
  const stat = body.stat || "DELIVRD";
  const err = String(body.err === undefined ? 0 : body.err).padStart(3, "0");
  const state = body.state !== undefined ? body.state : STATE_OF_STAT[stat];
  const done = Date.now() / 1000;
  // query_sm_resp's final_date is an absolute time, YYMMDDhhmmsstnnp (UTC: "000+").
  const final = stat === "ENROUTE" || stat === "ACCEPTD" ? "" : smppDate(done) + "00000+";
  storeMessage({ message_id: m.message_id, state, error: Number(err), final_date: final });
  const text = `id:${m.message_id} sub:001 dlvrd:${body.dlvrd || (stat === "DELIVRD" ? "001" : "000")}` +
    ` submit date:${smppDate(m.submit_date)} done date:${smppDate(done)} stat:${stat}` +
    ` err:${err} text:`;
  const options = {
    source_addr_ton: 1, source_addr_npi: 1, source_addr: m.destination_addr,
    dest_addr_ton: 5, dest_addr_npi: 0, destination_addr: m.source_addr,
    esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT, data_coding: 0,
    short_message: Buffer.from(text, "ascii"),
  };
  if (body.tlvs !== false) {
    options.receipted_message_id = m.message_id;
    options.message_state = state;
  }
  return queueDelivery(m.system_id, options);
}

const DATA_CODING = { 0: "default", 3: "latin1", 8: "ucs2" };

function mo(body) {
  const parts = body.parts || [body.text];
  const dataCoding = body.data_coding === undefined ? 0 : body.data_coding;
  if (!(dataCoding in DATA_CODING)) return { error: "data_coding must be 0, 3 or 8" };
  const base = {
    source_addr_ton: 1, source_addr_npi: 1, source_addr: body.source_addr,
    dest_addr_ton: body.dest_addr_ton === undefined ? 1 : body.dest_addr_ton,
    dest_addr_npi: body.dest_addr_npi === undefined ? 1 : body.dest_addr_npi,
    destination_addr: body.destination_addr, data_coding: dataCoding,
  };
  const ref = body.ref === undefined ? 0x42 : body.ref;
  const concat = parts.length > 1 ? body.concat || "udh8" : "none";
  const systemId = body.system_id || Object.keys(opts.accounts)[0];
  if (concat === "payload") {
    return [queueDelivery(systemId, { ...base, message_payload: { message: parts.join("") } })];
  }
  return parts.map((text, i) => {
    const options = { ...base };
    if (concat === "udh8") {
      options.short_message = { udh: Buffer.from([5, 0, 3, ref & 0xff, parts.length, i + 1]), message: text };
    } else if (concat === "udh16") {
      options.short_message = {
        udh: Buffer.from([6, 8, 4, (ref >> 8) & 0xff, ref & 0xff, parts.length, i + 1]), message: text,
      };
    } else {
      options.short_message = { message: text };
      if (concat === "sar") {
        options.sar_msg_ref_num = ref;
        options.sar_total_segments = parts.length;
        options.sar_segment_seqnum = i + 1;
      }
    }
    return queueDelivery(systemId, options);
  });
}

function onSession(session) {
  sessionSeq += 1;
  session.sid = sessionSeq;
  session.mode = null;
  sessions.add(session);
  session.on("pdu", (pdu) => {
    const entry = plain(pdu);
    record({
      dir: "in", session: session.sid, system_id: session.systemId || pdu.system_id || null,
      ...entry, password: undefined, hex: pdu._raw ? pdu._raw.toString("hex") : null,
    });
    if (pdu.isResponse()) return;
    switch (pdu.command) {
      case "bind_transmitter":
      case "bind_receiver":
      case "bind_transceiver":
        return onBind(session, pdu);
      case "submit_sm":
        return onSubmit(session, pdu);
      case "query_sm":
        return onQuery(session, pdu);
      case "enquire_link":
        return sendRecorded(session, pdu.response());
      case "unbind":
        sendRecorded(session, pdu.response());
        return setTimeout(() => session.close(), 20);
      default:
        // response() of an unknown command is a generic_nack with ESME_RINVCMDID.
        return sendRecorded(session, pdu.response({ command_status: STATUS.ESME_RINVCMDID }));
    }
  });
  session.on("error", () => {}); // a dropped client: "close" follows
  session.on("close", () => {
    sessions.delete(session);
    if (session.mode) bindsOf(session.systemId).open -= 1;
    for (const d of unacked.values()) if (d.session === session) d.session = null;
    record({ dir: "event", session: session.sid, system_id: session.systemId || null, command: "closed" });
  });
}

const serverOptions = opts.tlsKey
  ? { key: fs.readFileSync(opts.tlsKey), cert: fs.readFileSync(opts.tlsCert) }
  : {};
const server = smpp.createServer(serverOptions, onSession);

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : {});
      } catch (e) {
        reject(e);
      }
    });
  });
}

const control = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  let out;
  try {
    const body = req.method === "POST" ? await readBody(req) : {};
    if (url.pathname === "/state") {
      out = { binds, counters, unacked: unacked.size, messages: messages.size, sessions: sessions.size };
    } else if (url.pathname === "/pdus") {
      out = recorded.slice(Number(url.searchParams.get("since") || 0));
    } else if (url.pathname === "/submit-answers") {
      answers = (body.answers || []).map((a) => ({ status: a.status, count: a.count || 1 }));
      if (body.default) defaultAnswer = body.default;
      out = { answers, default: defaultAnswer };
    } else if (url.pathname === "/query") {
      querySupported = body.supported !== false;
      out = { supported: querySupported };
    } else if (url.pathname === "/auto-receipts") {
      autoReceipt = body.stat || null;
      out = { stat: autoReceipt };
    } else if (url.pathname === "/receipt") {
      out = receipt(body);
    } else if (url.pathname === "/mo") {
      out = mo(body);
    } else if (url.pathname === "/drop") {
      for (const s of sessions) s.destroy();
      out = { dropped: true };
    } else if (url.pathname === "/send-raw") {
      // Bytes as they are (a command we do not serve, a broken PDU) to every bound session.
      const raw = Buffer.from(body.hex, "hex");
      for (const s of sessions) if (s.mode) s.socket.write(raw);
      record({ dir: "out", session: null, system_id: null, command: "raw", hex: body.hex });
      out = { sent: true };
    } else if (url.pathname === "/unbind") {
      for (const s of sessions) if (s.mode) sendRecorded(s, new smpp.PDU("unbind"));
      out = { unbind: true };
    } else {
      res.writeHead(404);
      return res.end();
    }
  } catch (e) {
    res.writeHead(400, { "content-type": "application/json" });
    return res.end(JSON.stringify({ error: String(e) }));
  }
  res.writeHead(out && out.error ? 400 : 200, { "content-type": "application/json" });
  res.end(JSON.stringify(out));
});

// Stop by ourselves when the test process that started us is gone (stdin closes).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();

server.listen(opts.port, "127.0.0.1", () => {
  control.listen(opts.controlPort, "127.0.0.1", () => {
    process.stdout.write(`ready ${server.address().port} ${control.address().port}\n`);
  });
});
