from dealertui.cli import main

raise SystemExit(main())
