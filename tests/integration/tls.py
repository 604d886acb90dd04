"""Real TLS for the security tests: a self-signed certificate (openssl) and a TLS front for Tansu.

Tansu 0.6 accepts ``--cert`` (and refuses ``--cert`` with ``--key``) but its listener stays
plaintext whatever the URL scheme or PEM layout (probed: a client speaking TLS gets no
ServerHello). So the broker runs plaintext on a private port and :class:`TlsFront`
terminates TLS (Python's ``ssl``, i.e. OpenSSL) on the port Tansu advertises: every
client connection, bootstrap and broker alike, is a real TLS session verified against
the certificate's CA.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from pathlib import Path


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key (the certificate is its own CA)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


class TlsFront:
    """Listens with TLS on 127.0.0.1:``port`` and pipes each connection to 127.0.0.1:``target``.

    ``sessions`` counts completed TLS handshakes.
    """

    def __init__(self, port: int, target: int, cert: Path, key: Path) -> None:
        self.port, self.target = port, target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sessions = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TlsFront:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                                   ssl=self.context))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _serve(self, client_reader, client_writer) -> None:
        self.sessions += 1
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, broker_writer), self._pipe(broker_reader, client_writer))

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass  # the other side went away: close ours too
        finally:
            writer.close()
