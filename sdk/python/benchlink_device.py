"""A device for benchlink's native frame protocol (docs/protocol.md, 1.1), for
scripts: a Raspberry Pi or a PC standing in for a board, a test rig, a CI job.

Standard library only, Python 3.8+. Copy this file, or ``pip install ./sdk/python``.

    from benchlink_device import Device, FileRejected
    with Device("127.0.0.1", 9999, id="py-1") as d:
        d.text("hello")
        path = d.send_file("photo.jpg")    # the path under the console's --dir
        cmd = d.receive(timeout=5)         # the operator's next command, or None
        rtt = d.ping()                     # seconds

Files the console pushes (``/push``) are taken with ``files=``: a folder to
save them in (as NAME.part while they arrive, renamed when whole, never
overwriting), or a function called with (name, bytes) once a file arrived
whole and its CRC-32 matched. ``wait_file()`` waits for the next one.

    with Device("127.0.0.1", 9999, id="py-1", files="incoming") as d:
        name, where = d.wait_file(timeout=60)
"""

from __future__ import annotations

import binascii
import os
import socket
import stat
import struct
import time
import zlib
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple, Union

__all__ = ["Device", "FileRejected", "LinkError"]

MAGIC = b"\xa5\x5a"
HEADER_LEN = 10
HELLO, WELCOME, BYE, TEXT = 0x01, 0x02, 0x03, 0x10
FILE_BEGIN, FILE_DATA, FILE_END, FILE_ACK = 0x20, 0x21, 0x22, 0x23
PING, PONG, ERROR = 0x30, 0x31, 0x7F
SAVED, RESUME, CRC_MISMATCH, SIZE_MISMATCH, REFUSED, PROGRESS = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {
    SAVED: "SAVED",
    RESUME: "RESUME",
    CRC_MISMATCH: "CRC_MISMATCH",
    SIZE_MISMATCH: "SIZE_MISMATCH",
    REFUSED: "REFUSED",
    PROGRESS: "PROGRESS",
}
#: REFUSED reason codes worth trying again later (too many files, disk full, busy).
RETRY_LATER = {2, 3, 7}
#: A partial frame that gets no byte for this long is abandoned (protocol 1.1).
PARTIAL_TIMEOUT = 0.25
#: Pushed files are never opened through a link (O_NOFOLLOW where the OS has it).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Largest frame payload this module takes when it receives files (1 MiB + 12).
PUSH_MAX_FRAME = (1 << 20) + 12
#: First retry of an unanswered FILE_END or FILE_BEGIN+RESUME; then doubled.
RETRY_FIRST = 2.0
ANSWER_TIMEOUT = 30.0


class LinkError(ConnectionError):
    """The console could not be reached, refused this device, or went away."""


class FileRejected(Exception):
    """The console refused a file or its CRC never matched.

    ``status`` is the FILE_ACK status name (``REFUSED``, ``CRC_MISMATCH``,
    ``SIZE_MISMATCH``), ``code`` its value (the REFUSED reason code), ``detail``
    the console's sentence for people.
    """

    def __init__(self, status: str, code: int, detail: str) -> None:
        super().__init__(f"{status} ({code}): {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def encode(kind: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """One whole frame: magic, header with its CRC-16/XMODEM, payload, CRC-32."""
    head = struct.pack("<BBI", kind, flags, len(payload))
    hcrc = binascii.crc_hqx(head, 0)
    return MAGIC + head + struct.pack("<H", hcrc) + payload + struct.pack("<I", zlib.crc32(payload))


class _Decoder:
    """Frames from a byte stream, resyncing as docs/protocol.md says."""

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.buf = bytearray()
        self.max_frame = max_frame
        self.last_byte = time.monotonic()

    def feed(self, data: bytes) -> None:
        self.buf += data
        self.last_byte = time.monotonic()

    def frames(self) -> List[Tuple[int, int, bytes]]:
        out = []
        while True:
            at = self.buf.find(MAGIC)
            if at < 0:
                # Keep a lone trailing A5: it may be half a magic.
                del self.buf[: len(self.buf) - (1 if self.buf.endswith(b"\xa5") else 0)]
                return out
            del self.buf[:at]
            if len(self.buf) < HEADER_LEN:
                return out
            kind, flags, length = struct.unpack_from("<BBI", self.buf, 2)
            (hcrc,) = struct.unpack_from("<H", self.buf, 8)
            if binascii.crc_hqx(bytes(self.buf[2:8]), 0) != hcrc:
                del self.buf[:1]
                continue
            if length > self.max_frame:
                del self.buf[:2]
                continue
            total = HEADER_LEN + length + 4
            if len(self.buf) < total:
                return out
            payload = bytes(self.buf[HEADER_LEN : HEADER_LEN + length])
            (crc,) = struct.unpack_from("<I", self.buf, HEADER_LEN + length)
            if zlib.crc32(payload) != crc:
                del self.buf[:2]  # rescan after the magic (1.1)
                continue
            del self.buf[:total]
            out.append((kind, flags, payload))

    def abandon_stale(self) -> None:
        """Drops a partial frame that stopped arriving, so later frames are found."""
        if self.buf.startswith(MAGIC) and time.monotonic() - self.last_byte > PARTIAL_TIMEOUT:
            del self.buf[:2]


def _pairs(payload: bytes) -> dict:
    out = {}
    for line in payload.decode("utf-8", "replace").split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


class Device:
    """One connection to the console as a device.

    ``window``: keep at most that many bytes of file data unacknowledged (1.1
    flow control, for a link with a small buffer). ``reconnect``: when the link
    drops during ``send_file``, connect again and resume the file.
    """

    def __init__(
        self,
        host: str,
        port: int = 9999,
        id: str = "py-device",
        token: Optional[str] = None,
        window: Optional[int] = None,
        reconnect: bool = False,
        info: Optional[dict] = None,
        timeout: float = 10.0,
        files: Union[None, str, os.PathLike, Callable[[str, bytes], None]] = None,
    ) -> None:
        self.host, self.port, self.id, self.token = host, port, id, token
        self.window = window
        self.reconnect = reconnect
        self.info = dict(info or {})
        self.timeout = timeout
        self.name: str = id
        self.max_frame = 1 << 20
        self.protocol = "1.0"
        self._sock: Optional[socket.socket] = None
        self._decoder = _Decoder()
        self._frames: Deque[Tuple[int, int, bytes]] = deque()
        self._texts: Deque[str] = deque()
        self._acks: Deque[Tuple[int, int, int, str]] = deque()
        self._pongs: Deque[bytes] = deque()
        self._next_file_id = 1
        self.files = files
        #: Pushed files as they arrive whole: (name, path or None).
        self.received: Deque[Tuple[str, Optional[str]]] = deque()
        self._incoming: dict = {}
        self._connect()

    # ---- connection

    def _connect(self) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise LinkError(f"cannot connect to {self.host}:{self.port}: {e}") from e
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._decoder = _Decoder()
        self._frames.clear()
        lines = [f"id={self.id}"]
        if self.token is not None:
            lines.append(f"token={self.token}")
        if self.window:
            lines.append(f"window={self.window}")
        if self.files is not None:
            lines.append(f"max_frame={PUSH_MAX_FRAME}")
        lines += [f"{k}={v}" for k, v in self.info.items()]
        self._send(HELLO, ("\n".join(lines) + "\n").encode())
        deadline = time.monotonic() + self.timeout
        while True:
            frame = self._next(deadline)
            if frame is None:
                raise LinkError(f"{self.host}:{self.port} did not answer HELLO within {self.timeout} s")
            kind, _, payload = frame
            if kind == WELCOME:
                pairs = _pairs(payload)
                self.name = pairs.get("name", self.id)
                self.max_frame = int(pairs.get("max_frame", self.max_frame))
                self.protocol = pairs.get("protocol", "1.0")
                return
            if kind == ERROR:
                code, message = struct.unpack_from("<H", payload)[0], payload[2:].decode("utf-8", "replace")
                if code == 4:
                    raise LinkError("the console refused the connection: too many connections")
                raise LinkError(f"the console refused this device: error {code}: {message}")
            self._dispatch(frame)

    def close(self) -> None:
        """Says BYE and closes the connection."""
        if self._sock is not None:
            try:
                self._send(BYE, b"done")
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- frames

    def _send(self, kind: int, payload: bytes = b"", flags: int = 0) -> None:
        if self._sock is None:
            raise LinkError("not connected")
        try:
            self._sock.sendall(encode(kind, payload, flags))
        except OSError as e:
            raise LinkError(f"connection lost: {e}") from e

    def _next(self, deadline: float) -> Optional[Tuple[int, int, bytes]]:
        """The next frame from the console, or None at the deadline."""
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            assert self._sock is not None
            self._sock.settimeout(min(left, PARTIAL_TIMEOUT))
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                self._decoder.abandon_stale()
                self._frames.extend(self._decoder.frames())
                continue
            except OSError as e:
                raise LinkError(f"connection lost: {e}") from e
            if not data:
                raise LinkError("the console closed the connection")
            self._decoder.feed(data)
            self._frames.extend(self._decoder.frames())
        return self._frames.popleft()

    def _dispatch(self, frame: Tuple[int, int, bytes]) -> None:
        kind, flags, payload = frame
        if kind == TEXT:
            self._texts.append(payload.decode("utf-8", "replace"))
        elif kind == FILE_ACK and len(payload) >= 13:
            file_id, status, value = struct.unpack_from("<IBQ", payload)
            self._acks.append((file_id, status, value, payload[13:].decode("utf-8", "replace")))
        elif kind == PONG:
            self._pongs.append(payload)
        elif kind == PING:
            self._send(PONG, payload)
        elif kind == BYE:
            raise LinkError(f"the console said goodbye: {payload.decode('utf-8', 'replace')}")
        elif kind in (FILE_BEGIN, FILE_DATA, FILE_END):
            self._pushed(kind, flags, payload)

    # ---- files the console pushes

    def _answer(self, file_id: int, status: int, value: int, detail: str = "") -> None:
        self._send(FILE_ACK, struct.pack("<IBQ", file_id, status, value) + detail.encode())

    def _pushed(self, kind: int, flags: int, payload: bytes) -> None:
        """The receiving rules of docs/protocol.md, "Console to device"."""
        if kind == FILE_BEGIN and len(payload) >= 12:
            file_id, size = struct.unpack_from("<IQ", payload)
            name = os.path.basename(payload[12:].decode("utf-8", "replace")) or f"file-{file_id}"
            if self.files is None:
                return self._answer(file_id, REFUSED, 1, "this device takes no files")
            held, data = 0, bytearray()
            part = None
            if not callable(self.files):
                os.makedirs(self.files, exist_ok=True)
                part = os.path.join(self.files, name + ".part")
                # Never through a link: the folder may be shared.
                st = os.lstat(part) if os.path.lexists(part) else None
                if flags & 1 and st is not None and stat.S_ISREG(st.st_mode) and st.st_size <= size:
                    held = st.st_size  # resume what an interrupted push left
                else:
                    if st is not None:
                        os.remove(part)
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644))
            else:
                # The same file again after a reconnect: go on from what is held.
                for old in self._incoming.values():
                    if old["name"] == name and old["size"] == size and flags & 1:
                        held, data = old["held"], old["data"]
            self._incoming[file_id] = {
                "name": name, "size": size, "held": held, "data": data, "part": part,
                "gap": None, "acked": held, "resumed": held > 0,
            }
            if flags & 1:
                self._answer(file_id, RESUME, held)
        elif kind == FILE_DATA and len(payload) >= 12:
            file_id, offset = struct.unpack_from("<IQ", payload)
            f = self._incoming.get(file_id)
            if f is None:
                return self._answer(file_id, REFUSED, 1, "unknown file_id")
            chunk = payload[12:]
            if offset > f["held"]:
                if f["gap"] != f["held"]:
                    f["gap"] = f["held"]
                    self._answer(file_id, RESUME, f["held"], "gap")
                return
            fresh = chunk[f["held"] - offset:]
            if not fresh:
                return
            if f["held"] + len(fresh) > f["size"]:
                return self._answer(file_id, SIZE_MISMATCH, f["held"], "more data than announced")
            if f["part"]:
                fd = os.open(f["part"], os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
                with os.fdopen(fd, "ab") as out:
                    out.write(fresh)
            else:
                f["data"] += fresh
            f["held"] += len(fresh)
            f["gap"] = None
            if self.window and f["held"] - f["acked"] >= max(self.window // 2, 1):
                f["acked"] = f["held"]
                self._answer(file_id, PROGRESS, f["held"])
        elif kind == FILE_END and len(payload) >= 8:
            file_id, crc = struct.unpack_from("<II", payload)
            f = self._incoming.get(file_id)
            if f is None:
                return self._answer(file_id, REFUSED, 1, "unknown file_id")
            if f["held"] < f["size"] or f["gap"] is not None:
                f["gap"] = f["held"]
                return self._answer(file_id, RESUME, f["held"], "missing data")
            del self._incoming[file_id]
            if f["part"]:
                with os.fdopen(os.open(f["part"], os.O_RDONLY | _NOFOLLOW), "rb") as part:
                    data = part.read()
            else:
                data = bytes(f["data"])
            mine = zlib.crc32(data) & 0xFFFFFFFF
            if mine != crc:
                if f["part"]:
                    os.remove(f["part"])
                detail = "CRCs differ" if f["resumed"] else f"the data is {mine:08x}"
                return self._answer(file_id, CRC_MISMATCH, 0 if f["resumed"] else mine, detail)
            where = None
            if f["part"]:
                where = _free_name(self.files, f["name"])
                os.replace(f["part"], where)
            else:
                self.files(f["name"], data)
            self.received.append((f["name"], where))
            self._answer(file_id, SAVED, len(data), os.path.basename(where) if where else f["name"])

    def wait_file(self, timeout: Optional[float] = None) -> Optional[Tuple[str, Optional[str]]]:
        """The next file the console pushed: (name, path in the folder, or None
        with a callback), or None at the timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.received:
            if not self._pump(deadline):
                return None
        return self.received.popleft()

    def _pump(self, deadline: float) -> bool:
        """Handles one frame; False at the deadline."""
        frame = self._next(deadline)
        if frame is None:
            return False
        self._dispatch(frame)
        return True

    # ---- the application's side

    def text(self, text: str) -> None:
        """Sends TEXT (log or console output) to the console."""
        self._send(TEXT, text.encode())

    def receive(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next TEXT from the console (the operator's command), or None."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._texts:
            if not self._pump(deadline):
                return None
        return self._texts.popleft()

    def ping(self, timeout: Optional[float] = None) -> float:
        """Round trip to the console, in seconds."""
        token = os.urandom(8)
        started = time.monotonic()
        self._send(PING, token)
        deadline = started + (self.timeout if timeout is None else timeout)
        while token not in self._pongs:
            if not self._pump(deadline):
                raise LinkError("no PONG from the console")
        self._pongs.remove(token)
        return time.monotonic() - started

    def _ack(self, file_id: int, deadline: float) -> Optional[Tuple[int, int, str]]:
        while True:
            for i, (fid, status, value, detail) in enumerate(self._acks):
                if fid == file_id:
                    del self._acks[i]
                    return status, value, detail
            if not self._pump(deadline):
                return None

    def send_file(self, source: Union[str, os.PathLike, bytes], name: Optional[str] = None) -> str:
        """Uploads a file (a path, or bytes with ``name``) and returns the path the
        console saved it under (relative to its --dir). Repairs lost data, resumes
        after a reconnect (with ``reconnect=True``), honours the window, and
        raises FileRejected when the console refuses it or the CRC never matches.
        """
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            if not name:
                raise ValueError("send_file(bytes) needs name=")
        else:
            with open(source, "rb") as f:
                data = f.read()
            name = name or os.path.basename(os.fspath(source))
        for attempt in range(5):
            try:
                return self._upload(data, name, resume=attempt > 0)
            except LinkError:
                if not self.reconnect or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
                self._connect()
        raise LinkError("the link kept dropping")

    def _upload(self, data: bytes, name: str, resume: bool) -> str:
        file_id = self._next_file_id
        self._next_file_id += 1
        size = len(data)
        crc = zlib.crc32(data)
        window = self.window if self.protocol >= "1.1" else None
        chunk = max(1, min(self.max_frame - 12, 256 * 1024, (window // 2) if window else 1 << 30))
        begin = struct.pack("<IQ", file_id, size) + name.encode()
        self._send(FILE_BEGIN, begin, flags=1 if resume else 0)
        offset = acked = 0
        last_rewind = None
        if resume:
            answer = self._retrying(file_id, FILE_BEGIN, begin, 1)
            status, value, detail = answer
            if status != RESUME:
                return self._outcome(status, value, detail)
            offset = acked = min(value, size)
            last_rewind = value
        crc_mismatches = 0
        while True:
            # Answers so far: progress, a rewind, or the end.
            while self._acks or (window and offset < size and offset + min(chunk, size - offset) > acked + window):
                got = self._ack(file_id, time.monotonic() + (RETRY_FIRST if not self._acks else 0))
                if got is None:
                    break  # no PROGRESS for a while: send anyway
                status, value, detail = got
                if status == PROGRESS:
                    acked = max(acked, min(value, size))
                elif status == RESUME:
                    if value != last_rewind:
                        offset = acked = min(value, size)
                        last_rewind = value
                else:
                    return self._outcome(status, value, detail)
            if offset < size:
                piece = data[offset : offset + chunk]
                self._send(FILE_DATA, struct.pack("<IQ", file_id, offset) + piece)
                offset += len(piece)
                continue
            end = struct.pack("<II", file_id, crc)
            self._send(FILE_END, end)
            status, value, detail = self._retrying(file_id, FILE_END, end, 0)
            if status == RESUME:
                offset = acked = min(value, size)
                last_rewind = value
                continue
            if status == CRC_MISMATCH and crc_mismatches < 2:
                crc_mismatches += 1
                return self._upload(data, name, resume=False)
            return self._outcome(status, value, detail)

    def _retrying(self, file_id: int, kind: int, payload: bytes, flags: int) -> Tuple[int, int, str]:
        """Waits for the answer (not PROGRESS) to a FILE_END or FILE_BEGIN+RESUME,
        sending it again after 2, 4, 8 and 16 s (protocol 1.1's retry rule)."""
        wait = RETRY_FIRST
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            got = self._ack(file_id, min(deadline, time.monotonic() + wait))
            if got is None:
                self._send(kind, payload, flags)
                wait *= 2
                continue
            if got[0] != PROGRESS:
                return got
        raise LinkError(f"no answer from the console within {ANSWER_TIMEOUT:.0f} s")

    @staticmethod
    def _outcome(status: int, value: int, detail: str) -> str:
        if status == SAVED:
            return detail
        raise FileRejected(STATUS_NAMES.get(status, str(status)), value, detail)


def _free_name(folder, name: str) -> str:
    """``name`` in ``folder``, or ``name (2).ext``...: never overwrites."""
    path = os.path.join(folder, name)
    stem, ext = os.path.splitext(name)
    n = 2
    while os.path.lexists(path):
        path = os.path.join(folder, f"{stem} ({n}){ext}")
        n += 1
    return path
