"""``POST /v1/chat/completions``: one request, five stages, each its own module.

1. :mod:`.intake`   read the body within the size limit and check it is a chat request
2. :mod:`.resolve`  which model answers: a pool of the router, or an assistant in front of one
3. :mod:`.prepare`  the prompt for the pool: the assistant's memory, knowledge and prompt
                    assembly; the context check; images (OCR for a model without vision);
                    the content the audit record keeps
4. :mod:`.relay`    route the call (retries, queueing) and relay the answer, streamed or not
5. :mod:`.finish`   the response: the assistant's citations, history and memory; headers

A request goes down the stages once. What differs between a model pool and an assistant
lives in the two model objects of :mod:`.model`, not in branches of the driver.
"""

from enclave.gateway.chat.pipeline import chat_completions

__all__ = ["chat_completions"]
