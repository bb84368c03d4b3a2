// Listening in on a live call: its two tracks (caller and agent) arrive over a WebSocket as
// base64 μ-law at 8 kHz and are played through Web Audio, each track on its own clock.
import { api } from "./core.js";

/** Starts playing call `id`; resolves to the function that stops it. */
export async function listen(id) {
  const { ticket } = await api("POST", "/v1/events/ticket");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/calls/${id}/listen?ticket=${encodeURIComponent(ticket)}`);
  const audio = new AudioContext({ sampleRate: 8000 });
  const next = { inbound: 0, outbound: 0 };
  socket.onmessage = (m) => {
    let frame;
    try { frame = JSON.parse(m.data); } catch { return; }
    if (frame.event !== "media" || !(frame.track in next)) return;
    const bytes = Uint8Array.from(atob(frame.payload), (c) => c.charCodeAt(0));
    const buffer = audio.createBuffer(1, bytes.length, 8000);
    const samples = buffer.getChannelData(0);
    for (let i = 0; i < bytes.length; i += 1) samples[i] = mulawToFloat(bytes[i]);
    const source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(audio.destination);
    const at = Math.max(audio.currentTime + 0.05, next[frame.track]);
    source.start(at);
    next[frame.track] = at + buffer.duration;
  };
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error("Could not listen: the call may have ended or be on another server."));
  });
  return () => {
    socket.close();
    audio.close();
  };
}

/** G.711 μ-law byte to a sample in [-1, 1]. */
function mulawToFloat(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 7;
  const magnitude = (((u & 0x0f) << 3) + 0x84) << exponent;
  const sample = (u & 0x80 ? 0x84 - magnitude : magnitude - 0x84);
  return sample / 32768;
}
