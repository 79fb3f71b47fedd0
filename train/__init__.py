"""QLoRA fine-tuning of an exported dataset (`train run`), its export and evaluation."""

import logging


class _KernelsHubNotice(logging.Filter):
    """bitsandbytes (imported by peft) logs "Failed to load CPU gemm_4bit_forward from
    kernels-community: No module named 'kernels'" at import on CPUs with AVX512-BF16. It is
    not a failure: that optional kernel is fetched from the Hugging Face hub by the `kernels`
    package, which we do not install (no downloads at run time), and bitsandbytes falls back
    to its own CPU code. The CPU path trains without 4-bit quantisation anyway. Drop just
    that record; every other bitsandbytes message still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward from kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_KernelsHubNotice())
