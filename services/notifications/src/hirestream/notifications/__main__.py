"""`python -m hirestream.notifications`: run the notifications service."""

from hirestream.notifications.app import NotificationsSettings, create_app
from hirestream.shared.runtime.process import run_service

if __name__ == "__main__":
    run_service("notifications", NotificationsSettings, create_app)
