"""``enclave bench`` and ``enclave verify``: load tests and acceptance gates for any
OpenAI-compatible endpoint (vLLM, the enclave gateway, llama.cpp's server...).

- :mod:`.metrics`   pure maths: per-request samples, percentiles, goodput, time series
- :mod:`.workloads` prompt sources: fixed, synthetic zh/en, JSONL, images
- :mod:`.client`    the measuring HTTP/1.1 client (asyncio + httptools, timestamps on arrival)
- :mod:`.runner`    the load: concurrency, fixed or Poisson rate, ramp-up, warm-up, count
  or duration
- :mod:`.session`   one ``enclave bench`` run: levels, live progress, system monitor
- :mod:`.live`      the live progress line; :mod:`.tables` text and Markdown tables
- :mod:`.report`    JSON, CSV, Markdown and a self-contained HTML; :mod:`.charts` the PNGs
- :mod:`.compare`   two result files side by side
- :mod:`.verify`    the acceptance gates, thresholds from YAML
- :mod:`.sysmon`    the server's memory and CPU (psutil) and GPU memory (nvidia-smi)

Heavy parts (matplotlib, psutil) are the ``bench`` extra and imported lazily.
"""
