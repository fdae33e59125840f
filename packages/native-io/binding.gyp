{
  "targets": [
    {
      "target_name": "llama_pro_native_io",
      "sources": ["native/copy_range.c", "native/adamw.c"],
      "cflags": ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
