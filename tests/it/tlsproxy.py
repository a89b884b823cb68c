# The Docker Engine's socket behind mutual TLS on loopback, as `dockerd --tlsverify` serves it:
# tests/it/remote.rs starts it (python3 tlsproxy.py PORT DIR SOCKET) and ends it by PID.
import asyncio, ssl, sys

port, certs, socket_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{certs}/server.pem", f"{certs}/server-key.pem")
ctx.load_verify_locations(f"{certs}/ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def serve(client_r, client_w):
    engine_r, engine_w = await asyncio.open_unix_connection(socket_path)
    await asyncio.gather(pump(client_r, engine_w), pump(engine_r, client_w))


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=ctx)
    async with server:
        await server.serve_forever()


asyncio.run(main())
