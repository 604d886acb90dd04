from stream_dec.cli import main

raise SystemExit(main())
