@echo off
rem ===========================================================================
rem Points the logon scripts in NETLOGON at new-sbs.
rem
rem 1. Every script except SBS_LOGIN_SCRIPT.bat: each "\\old-sbs\" and
rem    "\\old-sbs." (also "\\old-sbs.DOMAIN\") becomes the same path on
rem    new-sbs (mapped drives, printers, tools). A bare "old-sbs" elsewhere (a
rem    comment, an echo) is left alone: only UNC paths matter to clients.
rem 2. SBS_LOGIN_SCRIPT.bat is the SBS client setup logon script. SBS 2000's
rem    runs "\\OLD-SBS\Clients\Setup\setup.exe /s OLD-SBS": the server name is
rem    also the argument of /s, not only part of a path. SBS 2003 Setup writes
rem    its own version (\\NEW-SBS\Clients\Setup\setup.exe /s NEW-SBS) when it
rem    finishes; if the file still names OLD-SBS (verify in rehearsal whether
rem    SBS 2003 Setup replaced it in an existing domain), both the path and the
rem    /s argument are pointed at NEW-SBS, the form SBS 2003 writes itself.
rem
rem File Replication Service copies the change to old-sbs. The original
rem scripts are saved once, before the first change, to
rem C:\mig\backup\netlogon: the step's rollback copies them back.
rem Safe to run again. Runs directly: new-sbs edits its own SYSVOL.
rem Needs PowerShell 2.0 (Windows Management Framework, installed on new-sbs
rem after SBS Setup).
rem NETLOGON's folder and the server names come from C:\mig\bin\customer.cmd
rem (the step customer-settings); PowerShell reads them from the environment.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
set SCRIPTS=%MIG_NETLOGON%
set BACKUP=C:\mig\backup\netlogon
if not exist "%SCRIPTS%\" (
    echo %SCRIPTS% not found: is new-sbs a domain controller with SYSVOL shared? 1>&2
    exit /b 1
)
if not exist "%BACKUP%\" (
    mkdir "%BACKUP%"
    xcopy "%SCRIPTS%\*" "%BACKUP%\" /e /k /h /y
    if errorlevel 1 exit /b 1
)
rem Files are read and written in the ANSI code page, as cmd and kix expect.
powershell -NoProfile -NonInteractive -Command "$enc = [Text.Encoding]::Default; $from = [regex]::Escape($env:MIG_OLD); $to = $env:MIG_NEW.ToUpper(); Get-ChildItem -Path $env:MIG_NETLOGON -Recurse -Include *.bat,*.cmd,*.vbs,*.kix | Where-Object { -not $_.PSIsContainer } | ForEach-Object { $old = [IO.File]::ReadAllText($_.FullName, $enc); $new = $old -replace ('(?i)\\\\' + $from + '(?=[\\.])'), ('\\' + $to); if ($_.Name -ieq 'SBS_LOGIN_SCRIPT.bat') { $new = $new -replace ('(?i)(/s\s+)' + $from + '\b'), ('${1}' + $to) }; if ($new -ne $old) { [IO.File]::WriteAllText($_.FullName, $new, $enc); Write-Output ('updated ' + $_.FullName) } }"
if errorlevel 1 exit /b 1
echo Lines that still mention %MIG_OLD% (only UNC paths and the /s argument must be gone):
findstr /s /i /n "%MIG_OLD%" "%SCRIPTS%\*"
exit /b 0
