from moalign.cli.main import main

raise SystemExit(main())
