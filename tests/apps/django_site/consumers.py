import threading

from channels.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer


class RoomConsumer(AsyncJsonWebsocketConsumer):
    """Joins the group of its room; what one member sends reaches every member (InMemoryChannelLayer)."""

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        await self.send_json({"joined": self.room, "thread": threading.current_thread().name})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive_json(self, content):
        await self.channel_layer.group_send(self.room, {"type": "room.message", "text": content["text"]})

    async def room_message(self, event):
        await self.send_json({"room": self.room, "text": event["text"]})


class SyncEcho(WebsocketConsumer):
    def connect(self):
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        if text_data == "bye":
            self.close(code=4002)
        elif bytes_data is not None:
            self.send(bytes_data=bytes_data[::-1])
        else:
            self.send(text_data=f"sync echo: {text_data}")
