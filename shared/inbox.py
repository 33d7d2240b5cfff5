"""The inbox: remember handled message ids so that a redelivered message changes nothing."""
from sqlalchemy.dialects.postgresql import insert


def first_delivery(session, inbox_model, message_id):
    """Record `message_id` in the caller's transaction; False if it was already handled.

    Call it inside the same transaction as the handler's state change: both commit or neither.
    Concurrent deliveries of one id serialise on the primary key and only one sees True.
    """
    result = session.execute(
        insert(inbox_model).values(message_id=str(message_id)).on_conflict_do_nothing().returning(
            inbox_model.message_id
        )
    )
    return result.first() is not None
