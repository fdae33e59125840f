{
  "targets": [
    {
      "target_name": "llama_pro_native_io",
      "sources": ["native/copy_range.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
