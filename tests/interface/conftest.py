import pytest
from nameko.events import event_handler



@pytest.fixture
def event_listener(container_factory, service_config):
    """event_listener(("orgs", "org.created"), ...) -> a list that fills with received payloads.

    A real nameko service on the test vhost, subscribed the way every consumer subscribes.
    """
    def make(*subscriptions):
        received = []
        attrs = {"name": "test_listener"}
        for index, (source, event_type) in enumerate(subscriptions):
            def handle(self, payload, _type=event_type):
                received.append((_type, payload))
            attrs[f"handle_{index}"] = event_handler(source, event_type)(handle)
        container = container_factory(type("TestListener", (), attrs), service_config)
        container.start()
        return received

    return make
