"""What ``ask`` does (:mod:`.app` and the modules it hands to), and the typed client of
the gateway's OpenAI-compatible API that ask, bench and tests use (:mod:`.chat`).

Import the submodules directly (``from enclave.client.chat import ChatClient``): this
package imports nothing, so ``ask --version`` stays fast.
"""
