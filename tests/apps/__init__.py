import os
import socket


async def plain_lifespan(receive, send) -> None:
    """The ASGI lifespan of an app with nothing to set up: acknowledge startup and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def server_socket_fd(scope) -> int:
    """This request's server-side socket, found by its addresses among this process's fds (-1 if not found): what
    a test app uses to look at or tune the socket the server is writing to."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if (sock.type == socket.SOCK_STREAM and sock.getpeername()[:2] == tuple(scope["client"])
                    and sock.getsockname()[:2] == tuple(scope["server"])):
                return int(name)
        except OSError:
            pass
        finally:
            sock.close()
    return -1
