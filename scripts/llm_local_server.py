"""The llama.cpp server (llama-cpp-python) for `LLM=local make dev`; scripts/llm_local.sh runs
it with the Python of .tools/llm-local and the arguments of `python -m llama_cpp.server`.

It adds one chat format, `smollm2`: SmolLM2's own ChatML template (the one in its GGUF), except
  - a message may have no content, as an assistant message that only calls tools has (the
    GGUF's template fails on it with HTTP 500), and tool calls show as text, so a chat whose
    history holds a tool exchange still gets an answer; tools offered are not shown to the
    model, which answers in text (it is too small to call tools);
  - a request without max_tokens (the Worker sends none on the OpenAI wire) gets MAX_TOKENS,
    not "until the context is full", so a rambling answer ends within seconds.
"""

from llama_cpp import llama_chat_format
from llama_cpp.server.__main__ import main

MAX_TOKENS = 512

TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message.role != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message.role + '\\n' + (message.content or '') }}"
    "{% for call in message.tool_calls or [] %}"
    "{{ ('\\n' if message.content or not loop.first else '') + '(called ' + call.function.name"
    " + ' with ' + (call.function.arguments or '{}') + ')' }}"
    "{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_handler = None


def smollm2(*, llama, max_tokens=None, **kwargs):
    global _handler
    if _handler is None:
        _handler = llama_chat_format.Jinja2ChatFormatter(
            TEMPLATE,
            eos_token="<|im_end|>",
            bos_token="<|im_start|>",
            stop_token_ids=[llama.token_eos()],
        ).to_chat_handler()
    return _handler(llama=llama, max_tokens=max_tokens or MAX_TOKENS, **kwargs)


llama_chat_format.register_chat_completion_handler("smollm2")(smollm2)

if __name__ == "__main__":
    main()
