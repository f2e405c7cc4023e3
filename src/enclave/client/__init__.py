"""Typed clients of the gateway's OpenAI-compatible API (used by ask, bench and tests).

Import the submodules directly (``from enclave.client.chat import ChatClient``): this
package imports nothing, so ``ask --version`` stays fast.
"""
