{
  "targets": [
    {
      "target_name": "stayup_fuse",
      "sources": ["stayup_fuse.c"],
      "defines": ["FUSE_USE_VERSION=314", "NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                 "<!@(pkg-config fuse3 --cflags)"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["<!@(pkg-config fuse3 --libs)"]
    },
    {
      "target_name": "stayup_net",
      "sources": ["stayup_net.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags!": ["-fno-exceptions"]
    }
  ]
}
